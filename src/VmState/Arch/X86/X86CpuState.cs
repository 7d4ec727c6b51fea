namespace VmState.Arch.X86;

/// <summary>
/// The architectural state of one x86-64 vCPU, as saved by QEMU (<c>target/i386/machine.c</c>, vmsd "cpu" v12)
/// and as written into ELF cores (NT_PRSTATUS and QEMU's "QEMU" note).
/// </summary>
public sealed class X86CpuState : IVcpuState
{
    /// <summary>Names of <see cref="Regs"/> in x86 encoding order (the order QEMU saves them in).</summary>
    public static readonly string[] GeneralRegisterNames =
    [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    ];

    /// <summary>Names of <see cref="Segments"/> in QEMU's order (R_ES .. R_GS).</summary>
    public static readonly string[] SegmentNames = ["es", "cs", "ss", "ds", "fs", "gs"];

    /// <summary>Index of the segment registers in <see cref="Segments"/>.</summary>
    public const int Es = 0, Cs = 1, Ss = 2, Ds = 3, Fs = 4, Gs = 5;

    /// <summary>QEMU's cpu_index (the instance id of the "cpu" section).</summary>
    public int Index { get; set; }

    /// <summary>General registers in x86 encoding order: RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15.</summary>
    public ulong[] Regs { get; } = new ulong[16];

    /// <summary>Instruction pointer.</summary>
    public ulong Rip { get; set; }

    /// <summary>Flags register.</summary>
    public ulong Rflags { get; set; }

    /// <summary>ES, CS, SS, DS, FS, GS.</summary>
    public X86Segment[] Segments { get; } = new X86Segment[6];

    /// <summary>Local descriptor table register.</summary>
    public X86Segment Ldt { get; set; }

    /// <summary>Task register.</summary>
    public X86Segment Tr { get; set; }

    /// <summary>GDT (base and limit).</summary>
    public X86Segment Gdt { get; set; }

    /// <summary>IDT (base and limit).</summary>
    public X86Segment Idt { get; set; }

    /// <summary>Control register 0.</summary>
    public ulong Cr0 { get; set; }

    /// <summary>Control register 2 (page-fault address).</summary>
    public ulong Cr2 { get; set; }

    /// <summary>Control register 3 (page-table root, PCID in the low bits).</summary>
    public ulong Cr3 { get; set; }

    /// <summary>Control register 4.</summary>
    public ulong Cr4 { get; set; }

    /// <summary>Debug registers DR0..DR7.</summary>
    public ulong[] Dr { get; } = new ulong[8];

    /// <summary>IA32_EFER.</summary>
    public ulong Efer { get; set; }

    /// <summary>IA32_KERNEL_GS_BASE.</summary>
    public ulong KernelGsBase { get; set; }

    /// <summary>IA32_STAR.</summary>
    public ulong Star { get; set; }

    /// <summary>IA32_LSTAR.</summary>
    public ulong Lstar { get; set; }

    /// <summary>IA32_CSTAR.</summary>
    public ulong Cstar { get; set; }

    /// <summary>IA32_FMASK.</summary>
    public ulong Fmask { get; set; }

    /// <summary>IA32_SYSENTER_CS.</summary>
    public ulong SysenterCs { get; set; }

    /// <summary>IA32_SYSENTER_ESP.</summary>
    public ulong SysenterEsp { get; set; }

    /// <summary>IA32_SYSENTER_EIP.</summary>
    public ulong SysenterEip { get; set; }

    /// <summary>QEMU's hidden flags (HF_*), needed to resume under TCG.</summary>
    public uint HFlags { get; set; }

    /// <summary>XCR0.</summary>
    public ulong Xcr0 { get; set; }

    /// <summary>MXCSR.</summary>
    public uint Mxcsr { get; set; }

    /// <summary>x87 control word.</summary>
    public ushort Fcw { get; set; }

    /// <summary>x87 status word (TOP in bits 11–13).</summary>
    public ushort Fsw { get; set; }

    /// <summary>XMM0..XMM15, 16 bytes each, low quadword first.</summary>
    public byte[] Xmm { get; } = new byte[16 * 16];

    /// <summary>True when the vCPU was halted (from the "cpu_common" section), when known.</summary>
    public bool? Halted { get; set; }

    /// <summary>
    /// Register by name or alias, for the registers <c>edit --set-reg</c> can set (<see cref="X86Register.Editable"/>:
    /// general registers, rip, rflags, cr0..cr4, efer, segment selectors and bases, kernel_gs_base and the syscall
    /// MSRs); null for any other name.
    /// </summary>
    public ulong? GetRegister(string name) => X86Registers.Find(name) is { Editable: true } r ? r.Get(this) : null;

    /// <inheritdoc />
    IArchitecture IVcpuState.Architecture => X86Architecture.Instance;

    /// <inheritdoc />
    ulong IVcpuState.ProgramCounter => Rip;

    /// <inheritdoc />
    ulong IVcpuState.StackPointer => Regs[4];

    /// <inheritdoc />
    ulong? IVcpuState.GetRegister(string name) => X86Registers.Find(name) is { } r ? r.Get(this) : null;

    /// <summary>True when the CPU is in 64-bit long mode (EFER.LMA).</summary>
    public bool LongMode => (Efer & (1UL << 10)) != 0;
}
