namespace VmState.Arch.X86;

/// <summary>
/// The x86-64 register table: every register VmState reads, writes or shows, once, with its name in each format.
/// Adding a register is one line in <see cref="Build"/>; the hardware files, the "cpu" section decoder and editor,
/// the GDB server and the ELF notes all walk <see cref="All"/>.
/// </summary>
public static class X86Registers
{
    /// <summary>gdb's i386 core feature (gdb <c>features/i386/64bit-core.xml</c>).</summary>
    public const string GdbCore = "org.gnu.gdb.i386.core";

    /// <summary>gdb's SSE feature (gdb <c>features/i386/64bit-sse.xml</c>).</summary>
    public const string GdbSse = "org.gnu.gdb.i386.sse";

    /// <summary>gdb's segment-base feature (gdb <c>features/i386/64bit-segments.xml</c>).</summary>
    public const string GdbSegments = "org.gnu.gdb.i386.segments";

    /// <summary>Our own feature with the system registers, so <c>info registers cr3</c> works in gdb.</summary>
    public const string GdbSystem = "org.vmstate.x86.system";

    /// <summary>
    /// Quadwords in Linux <c>struct user_regs_struct</c> (<c>arch/x86/include/asm/user_64.h</c>), the pr_reg of
    /// NT_PRSTATUS.
    /// </summary>
    public const int UserRegsCount = 27;

    /// <summary>
    /// Every register, in hardware.json order (the general registers in x86 encoding order, as QEMU saves them), then
    /// the segment selectors and bases, then the registers only gdb or user_regs_struct has.
    /// </summary>
    public static readonly IReadOnlyList<X86Register> All = Build();

    /// <summary>The registers gdb's target description offers, indexed by gdb register number.</summary>
    public static readonly IReadOnlyList<X86Register> Gdb = ByGdbNumber();

    /// <summary>The registers of <c>user_regs_struct</c>, indexed by quadword.</summary>
    public static readonly IReadOnlyList<X86Register> UserRegs = ByUserRegsIndex();

    private static readonly Dictionary<string, X86Register> s_byName = ByName();

    /// <summary>A register by its name or an alias (case-insensitive), or null.</summary>
    public static X86Register? Find(string name) => s_byName.GetValueOrDefault(name.ToLowerInvariant());

    /// <summary>The register called <paramref name="name"/>; for names the table is known to have.</summary>
    /// <exception cref="KeyNotFoundException">No such register.</exception>
    public static X86Register Get(string name) => Find(name) ?? throw new KeyNotFoundException($"no x86 register \"{name}\"");

    private static List<X86Register> Build()
    {
        // Columns: model access and "cpu" section field (QEMU 7.2 target/i386/machine.c vmstate_x86_cpu), then
        // hardware files, editable, gdb number/name/bits/type/feature (gdb features/i386/64bit-*.xml), user_regs_struct
        // quadword (Linux arch/x86/include/asm/user_64.h), offset in QEMUCPUState (QEMU 7.2 target/i386/arch_dump.c).
        const string core = GdbCore, sse = GdbSse, segs = GdbSegments, sys = GdbSystem;
        var r = new List<X86Register>
        {
            X86Register.General("rax", 0).Hardware().Writable().GdbAs(0, "rax", 64, "int64", core).UserRegs(10).QemuNote(8),
            X86Register.General("rcx", 1).Hardware().Writable().GdbAs(2, "rcx", 64, "int64", core).UserRegs(11).QemuNote(24),
            X86Register.General("rdx", 2).Hardware().Writable().GdbAs(3, "rdx", 64, "int64", core).UserRegs(12).QemuNote(32),
            X86Register.General("rbx", 3).Hardware().Writable().GdbAs(1, "rbx", 64, "int64", core).UserRegs(5).QemuNote(16),
            X86Register.General("rsp", 4).Hardware().Writable().GdbAs(7, "rsp", 64, "data_ptr", core).UserRegs(19).QemuNote(56),
            X86Register.General("rbp", 5).Hardware().Writable().GdbAs(6, "rbp", 64, "data_ptr", core).UserRegs(4).QemuNote(64),
            X86Register.General("rsi", 6).Hardware().Writable().GdbAs(4, "rsi", 64, "int64", core).UserRegs(13).QemuNote(40),
            X86Register.General("rdi", 7).Hardware().Writable().GdbAs(5, "rdi", 64, "int64", core).UserRegs(14).QemuNote(48),
            X86Register.General("r8", 8).Hardware().Writable().GdbAs(8, "r8", 64, "int64", core).UserRegs(9).QemuNote(72),
            X86Register.General("r9", 9).Hardware().Writable().GdbAs(9, "r9", 64, "int64", core).UserRegs(8).QemuNote(80),
            X86Register.General("r10", 10).Hardware().Writable().GdbAs(10, "r10", 64, "int64", core).UserRegs(7).QemuNote(88),
            X86Register.General("r11", 11).Hardware().Writable().GdbAs(11, "r11", 64, "int64", core).UserRegs(6).QemuNote(96),
            X86Register.General("r12", 12).Hardware().Writable().GdbAs(12, "r12", 64, "int64", core).UserRegs(3).QemuNote(104),
            X86Register.General("r13", 13).Hardware().Writable().GdbAs(13, "r13", 64, "int64", core).UserRegs(2).QemuNote(112),
            X86Register.General("r14", 14).Hardware().Writable().GdbAs(14, "r14", 64, "int64", core).UserRegs(1).QemuNote(120),
            X86Register.General("r15", 15).Hardware().Writable().GdbAs(15, "r15", 64, "int64", core).UserRegs(0).QemuNote(128),
            X86Register.Scalar("rip", 8, c => c.Rip, (c, v) => c.Rip = v, new("env.eip", Required: true)).Hardware().Writable().GdbAs(16, "rip", 64, "code_ptr", core).UserRegs(16).QemuNote(136),
            X86Register.Scalar("rflags", 8, c => c.Rflags, (c, v) => c.Rflags = v, new("env.eflags", Required: true)).Alias("eflags").Hardware().Writable().GdbAs(17, "eflags", 32, "int32", core).UserRegs(18).QemuNote(144),
            X86Register.Scalar("cr0", 8, c => c.Cr0, (c, v) => c.Cr0 = v, new("env.cr[0]", Required: true)).Hardware().Writable().GdbAs(60, "cr0", 64, "int64", sys).QemuNote(392),
            X86Register.Scalar("cr2", 8, c => c.Cr2, (c, v) => c.Cr2 = v, new("env.cr[2]")).Hardware().Writable().GdbAs(61, "cr2", 64, "int64", sys).QemuNote(408),
            X86Register.Scalar("cr3", 8, c => c.Cr3, (c, v) => c.Cr3 = v, new("env.cr[3]", Required: true)).Hardware().Writable().GdbAs(62, "cr3", 64, "int64", sys).QemuNote(416),
            X86Register.Scalar("cr4", 8, c => c.Cr4, (c, v) => c.Cr4 = v, new("env.cr[4]", Required: true)).Hardware().Writable().GdbAs(63, "cr4", 64, "int64", sys).QemuNote(424),
            X86Register.Scalar("efer", 8, c => c.Efer, (c, v) => c.Efer = v, new("env.efer")).Hardware().Writable().GdbAs(64, "efer", 64, "int64", sys),
            X86Register.Scalar("kernel_gs_base", 8, c => c.KernelGsBase, (c, v) => c.KernelGsBase = v, new("env.kernelgsbase")).Hardware().Writable().GdbAs(59, "k_gs_base", 64, "int64", sys).QemuNote(432),
            X86Register.Scalar("star", 8, c => c.Star, (c, v) => c.Star = v, new("env.star")).Hardware().Writable(),
            X86Register.Scalar("lstar", 8, c => c.Lstar, (c, v) => c.Lstar = v, new("env.lstar")).Hardware().Writable(),
            X86Register.Scalar("cstar", 8, c => c.Cstar, (c, v) => c.Cstar = v, new("env.cstar")).Hardware().Writable(),
            X86Register.Scalar("fmask", 8, c => c.Fmask, (c, v) => c.Fmask = v, new("env.fmask")).Hardware().Writable(),
            X86Register.Scalar("sysenter_cs", 8, c => c.SysenterCs, (c, v) => c.SysenterCs = v, new("env.sysenter_cs")).Hardware(),
            X86Register.Scalar("sysenter_esp", 8, c => c.SysenterEsp, (c, v) => c.SysenterEsp = v, new("env.sysenter_esp")).Hardware(),
            X86Register.Scalar("sysenter_eip", 8, c => c.SysenterEip, (c, v) => c.SysenterEip = v, new("env.sysenter_eip")).Hardware(),
            X86Register.Scalar("xcr0", 8, c => c.Xcr0, (c, v) => c.Xcr0 = v, new("env.xcr0")).Hardware(),
            X86Register.Scalar("mxcsr", 4, c => c.Mxcsr, (c, v) => c.Mxcsr = (uint)v, new("env.mxcsr")).Hardware().GdbAs(56, "mxcsr", 32, "int", sse),
            X86Register.Scalar("fcw", 2, c => c.Fcw, (c, v) => c.Fcw = (ushort)v, new("env.fpuc")).Hardware().GdbAs(32, "fctrl", 32, "int", core),
            X86Register.Scalar("fsw", 2, c => c.Fsw, (c, v) => c.Fsw = (ushort)v, new("env.fpus_vmstate")).Hardware().GdbAs(33, "fstat", 32, "int", core),
            X86Register.Scalar("hflags", 4, c => c.HFlags, (c, v) => c.HFlags = (uint)v, new("env.hflags")).Hardware(),
        };
        for (int i = 0; i < 8; i++)
        {
            int d = i;
            r.Add(X86Register.Scalar($"dr{d}", 8, c => c.Dr[d], (c, v) => c.Dr[d] = v, new("env.dr", d, 8)).Hardware());
        }

        // Selectors are 32 bits in gdb's 'g' packet (64bit-core.xml); the bases of FS and GS are in 64bit-segments.xml.
        r.Add(X86Register.Segment("es", X86CpuState.Es, false).Writable().GdbAs(21, "es", 32, "int32", core).UserRegs(24));
        r.Add(X86Register.Segment("cs", X86CpuState.Cs, false).Writable().GdbAs(18, "cs", 32, "int32", core).UserRegs(17));
        r.Add(X86Register.Segment("ss", X86CpuState.Ss, false).Writable().GdbAs(19, "ss", 32, "int32", core).UserRegs(20));
        r.Add(X86Register.Segment("ds", X86CpuState.Ds, false).Writable().GdbAs(20, "ds", 32, "int32", core).UserRegs(23));
        r.Add(X86Register.Segment("fs", X86CpuState.Fs, false).Writable().GdbAs(22, "fs", 32, "int32", core).UserRegs(25));
        r.Add(X86Register.Segment("gs", X86CpuState.Gs, false).Writable().GdbAs(23, "gs", 32, "int32", core).UserRegs(26));
        r.Add(X86Register.Segment("es_base", X86CpuState.Es, true).Writable());
        r.Add(X86Register.Segment("cs_base", X86CpuState.Cs, true).Writable());
        r.Add(X86Register.Segment("ss_base", X86CpuState.Ss, true).Writable());
        r.Add(X86Register.Segment("ds_base", X86CpuState.Ds, true).Writable());
        r.Add(X86Register.Segment("fs_base", X86CpuState.Fs, true).Writable().GdbAs(57, "fs_base", 64, "int64", segs).UserRegs(21));
        r.Add(X86Register.Segment("gs_base", X86CpuState.Gs, true).Writable().GdbAs(58, "gs_base", 64, "int64", segs).UserRegs(22));

        // gdb's x87 stack and x87 pointer registers: QEMU's "cpu" section has them, the model does not; they read as 0.
        for (int i = 0; i < 8; i++)
        {
            r.Add(X86Register.Absent($"st{i}", 10).GdbAs(24 + i, $"st{i}", 80, "i387_ext", core));
        }

        string[] x87 = ["ftag", "fiseg", "fioff", "foseg", "fooff", "fop"];
        for (int i = 0; i < x87.Length; i++)
        {
            r.Add(X86Register.Absent(x87[i], 4).GdbAs(34 + i, x87[i], 32, "int", core));
        }

        for (int i = 0; i < 16; i++)
        {
            r.Add(X86Register.Xmm(i).GdbAs(40 + i, $"xmm{i}", 128, "vec128", sse));
        }

        // orig_rax is the syscall number the kernel keeps for restarts; a vCPU has none, so cores carry 0 there.
        r.Add(X86Register.Absent("orig_rax", 8).UserRegs(15));
        return r;
    }

    private static List<X86Register> ByGdbNumber()
    {
        var list = new List<X86Register>();
        foreach (X86Register reg in All)
        {
            if (reg.Gdb is not null)
            {
                list.Add(reg);
            }
        }

        list.Sort((a, b) => a.Gdb!.Number.CompareTo(b.Gdb!.Number));
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i].Gdb!.Number != i)
            {
                throw new InvalidOperationException($"gdb register numbers are not 0..{list.Count - 1}: {list[i].Name} has {list[i].Gdb!.Number} at {i}");
            }
        }

        return list;
    }

    private static X86Register[] ByUserRegsIndex()
    {
        var slots = new X86Register?[UserRegsCount];
        foreach (X86Register reg in All)
        {
            if (reg.UserRegsIndex >= 0)
            {
                if (slots[reg.UserRegsIndex] is not null)
                {
                    throw new InvalidOperationException($"user_regs_struct quadword {reg.UserRegsIndex} given twice");
                }

                slots[reg.UserRegsIndex] = reg;
            }
        }

        var result = new X86Register[UserRegsCount];
        for (int i = 0; i < UserRegsCount; i++)
        {
            result[i] = slots[i] ?? throw new InvalidOperationException($"user_regs_struct quadword {i} has no register");
        }

        return result;
    }

    private static Dictionary<string, X86Register> ByName()
    {
        var map = new Dictionary<string, X86Register>(StringComparer.Ordinal);
        foreach (X86Register reg in All)
        {
            map.Add(reg.Name, reg);
            foreach (string alias in reg.Aliases)
            {
                map.Add(alias, reg);
            }
        }

        return map;
    }
}
