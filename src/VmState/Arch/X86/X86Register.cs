using System.Buffers.Binary;

namespace VmState.Arch.X86;

/// <summary>
/// One x86-64 register and every place VmState names it: the model (<see cref="X86CpuState"/>), QEMU's "cpu"
/// section, gdb's target description, hardware.json/xml, and the ELF notes. The registers are listed once, in
/// <see cref="X86Registers.All"/>; every reader and writer walks that list.
/// </summary>
public sealed class X86Register
{
    private readonly Func<X86CpuState, ulong>? _get;
    private readonly Action<X86CpuState, ulong>? _set;
    private readonly int _xmm;

    private X86Register(string name, int size, Func<X86CpuState, ulong>? get, Action<X86CpuState, ulong>? set, int xmm)
    {
        Name = name;
        Size = size;
        _get = get;
        _set = set;
        _xmm = xmm;
    }

    /// <summary>
    /// The register's name in hardware.json/xml, for <c>edit --set-reg</c>, <see cref="X86CpuState.GetRegister"/>
    /// and the hardware file the injector reads (lower case).
    /// </summary>
    public string Name { get; }

    /// <summary>Other names <see cref="X86Registers.Find"/> accepts ("eflags" for rflags).</summary>
    public IReadOnlyList<string> Aliases { get; private set; } = [];

    /// <summary>Size in bytes of the value the model keeps (or, for a register the model does not keep, gdb's size).</summary>
    public int Size { get; }

    /// <summary>True when <see cref="X86CpuState"/> keeps the register; the others read as zeros.</summary>
    public bool InModel => _get is not null || _xmm >= 0;

    /// <summary>True when the register is in the "registers" block of hardware.json and hardware.xml.</summary>
    public bool InHardwareFile { get; private set; }

    /// <summary>
    /// True when <c>edit --set-reg</c>, the GDB server's G/P packets and the injector may change it: the general,
    /// control and segment registers, rip, rflags, efer and the syscall MSRs, the set the editor has always accepted.
    /// The others of the hardware files (SYSENTER MSRs, XCR0, MXCSR, x87 control and status, hflags, DR0-DR7) are
    /// shown but not set: QEMU derives state from some of them on load (QEMU 7.2 <c>target/i386/machine.c</c>
    /// <c>cpu_post_load</c>: fpus_vmstate gives fpstt and fpus, hflags' CPL is taken from SS).
    /// </summary>
    public bool Editable { get; private set; }

    /// <summary>Where QEMU's "cpu" section keeps it, or null (the XMM registers are decoded as structures, elsewhere).</summary>
    public X86StateField? StateField { get; private set; }

    /// <summary>gdb's name, number and type for it, or null when the target description does not offer it.</summary>
    public X86GdbRegister? Gdb { get; private set; }

    /// <summary>
    /// Its quadword index in Linux <c>struct user_regs_struct</c> (<c>arch/x86/include/asm/user_64.h</c>), the
    /// pr_reg of NT_PRSTATUS, or -1.
    /// </summary>
    public int UserRegsIndex { get; private set; } = -1;

    /// <summary>
    /// Its byte offset in QEMU's "QEMU" ELF note (<c>QEMUCPUState</c>, QEMU 7.2 <c>target/i386/arch_dump.c</c>), or -1
    /// (segments are written there as whole <c>QEMUCPUSegment</c>s).
    /// </summary>
    public int QemuNoteOffset { get; private set; } = -1;

    /// <summary>The value of a register of at most 8 bytes (zero for one the model does not keep).</summary>
    /// <exception cref="InvalidOperationException">The register is wider than 8 bytes.</exception>
    public ulong Get(X86CpuState cpu)
    {
        if (_xmm >= 0)
        {
            throw new InvalidOperationException($"{Name} has {Size} bytes; read it with Read");
        }

        return _get?.Invoke(cpu) ?? 0;
    }

    /// <summary>Sets a register of at most 8 bytes (truncated to its size).</summary>
    /// <exception cref="InvalidOperationException">The model does not keep the register, or it is wider than 8 bytes.</exception>
    public void Set(X86CpuState cpu, ulong value)
    {
        if (_set is null)
        {
            throw new InvalidOperationException($"{Name} cannot be set as an integer");
        }

        _set(cpu, value);
    }

    /// <summary>
    /// Writes the value little-endian into <paramref name="destination"/>: truncated when it is shorter (gdb's
    /// 32-bit eflags and segment selectors), zero-extended when it is longer.
    /// </summary>
    public void Read(X86CpuState cpu, Span<byte> destination)
    {
        destination.Clear();
        if (_xmm >= 0)
        {
            ReadOnlySpan<byte> x = cpu.Xmm.AsSpan(_xmm * 16, 16);
            x[..Math.Min(16, destination.Length)].CopyTo(destination);
            return;
        }

        Span<byte> tmp = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(tmp, Get(cpu));
        tmp[..Math.Min(8, destination.Length)].CopyTo(destination);
    }

    /// <summary>A general-purpose register: <see cref="X86CpuState.Regs"/>[<paramref name="index"/>], <c>env.regs</c>.</summary>
    internal static X86Register General(string name, int index) =>
        Scalar(name, 8, c => c.Regs[index], (c, v) => c.Regs[index] = v, new("env.regs", index, 16, Required: true));

    /// <summary>A segment selector (<paramref name="isBase"/> false) or base in <see cref="X86CpuState.Segments"/>.</summary>
    internal static X86Register Segment(string name, int index, bool isBase) => isBase
        ? Scalar(name, 8, c => c.Segments[index].Base, (c, v) => c.Segments[index] = c.Segments[index] with { Base = v }, new("env.segs", index, 6, "base", Required: true))
        : Scalar(name, 4, c => c.Segments[index].Selector, (c, v) => c.Segments[index] = c.Segments[index] with { Selector = (uint)v }, new("env.segs", index, 6, "selector", Required: true));

    /// <summary>A register kept as one integer.</summary>
    internal static X86Register Scalar(string name, int size, Func<X86CpuState, ulong> get, Action<X86CpuState, ulong> set, X86StateField? field) =>
        new(name, size, get, set, -1) { StateField = field };

    /// <summary>XMM<paramref name="index"/>, 16 bytes of <see cref="X86CpuState.Xmm"/>.</summary>
    internal static X86Register Xmm(int index) => new($"xmm{index}", 16, null, null, index);

    /// <summary>A register the model does not keep (gdb's x87 stack, orig_rax): it reads as zeros.</summary>
    internal static X86Register Absent(string name, int size) => new(name, size, null, null, -1);

    // The builders below run once, while X86Registers.All is built; after that a register does not change.

    /// <summary>With other accepted names.</summary>
    internal X86Register Alias(params string[] aliases)
    {
        Aliases = aliases;
        return this;
    }

    /// <summary>Listed in the hardware files' "registers" block.</summary>
    internal X86Register Hardware()
    {
        InHardwareFile = true;
        return this;
    }

    /// <summary>Settable by edit --set-reg, gdb and the injector.</summary>
    internal X86Register Writable()
    {
        Editable = true;
        return this;
    }

    /// <summary>Offered to gdb.</summary>
    internal X86Register GdbAs(int number, string name, int bits, string type, string feature)
    {
        Gdb = new(number, name, bits, type, feature);
        return this;
    }

    /// <summary>In NT_PRSTATUS's user_regs_struct.</summary>
    internal X86Register UserRegs(int index)
    {
        UserRegsIndex = index;
        return this;
    }

    /// <summary>In the "QEMU" note.</summary>
    internal X86Register QemuNote(int offset)
    {
        QemuNoteOffset = offset;
        return this;
    }
}
