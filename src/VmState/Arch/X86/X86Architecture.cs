namespace VmState.Arch.X86;

/// <summary>x86-64 as an <see cref="IArchitecture"/>: gdb's i386:x86-64 register file and the System V AMD64 ABI.</summary>
public sealed class X86Architecture : IArchitecture
{
    private X86Architecture()
    {
        var regs = new List<RegisterInfo>();
        foreach (X86Register r in X86Registers.Gdb)
        {
            if (r?.Gdb is X86GdbRegister g)
            {
                regs.Add(new RegisterInfo(g.Name, g.Bits / 8, g.Number, g.Type.StartsWith("vec", StringComparison.Ordinal) ? "vector" : "general"));
            }
        }

        Registers = regs;
    }

    /// <summary>The one instance.</summary>
    public static X86Architecture Instance { get; } = new();

    /// <inheritdoc />
    public CpuArchitecture Kind => CpuArchitecture.X86_64;

    /// <inheritdoc />
    public string GdbArchitecture => "i386:x86-64";

    /// <inheritdoc />
    public ushort ElfMachine => 62;

    /// <inheritdoc />
    public IReadOnlyList<RegisterInfo> Registers { get; }

    /// <inheritdoc />
    /// <remarks>System V AMD64 ABI §3.2.3: rdi, rsi, rdx, rcx, r8, r9.</remarks>
    public IReadOnlyList<string> ArgumentRegisters { get; } = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];
}
