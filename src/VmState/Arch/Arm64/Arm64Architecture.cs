namespace VmState.Arch.Arm64;

/// <summary>
/// AArch64 as an <see cref="IArchitecture"/>: gdb's aarch64 core and FP/SIMD register file (gdb
/// <c>features/aarch64-core.xml</c>, <c>aarch64-fpu.xml</c>: x0–x30 0–30, sp 31, pc 32, cpsr 33, v0–v31 34–65,
/// fpsr 66, fpcr 67) and the AAPCS64 argument registers.
/// </summary>
public sealed class Arm64Architecture : IArchitecture
{
    /// <summary>gdb number of sp.</summary>
    public const int GdbSp = 31;

    /// <summary>gdb number of pc.</summary>
    public const int GdbPc = 32;

    /// <summary>gdb number of cpsr (32 bits).</summary>
    public const int GdbCpsr = 33;

    /// <summary>gdb number of v0.</summary>
    public const int GdbV0 = 34;

    /// <summary>gdb number of fpsr.</summary>
    public const int GdbFpsr = 66;

    /// <summary>gdb number of fpcr.</summary>
    public const int GdbFpcr = 67;

    /// <summary>e_machine of AArch64 (EM_AARCH64).</summary>
    public const ushort EmAarch64 = 183;

    private Arm64Architecture()
    {
        var regs = new List<RegisterInfo>(68);
        for (int i = 0; i <= 30; i++)
        {
            regs.Add(new RegisterInfo($"x{i}", 8, i, "general"));
        }

        regs.Add(new RegisterInfo("sp", 8, GdbSp, "general"));
        regs.Add(new RegisterInfo("pc", 8, GdbPc, "general"));
        regs.Add(new RegisterInfo("cpsr", 4, GdbCpsr, "general"));
        for (int i = 0; i < 32; i++)
        {
            regs.Add(new RegisterInfo($"v{i}", 16, GdbV0 + i, "vector"));
        }

        regs.Add(new RegisterInfo("fpsr", 4, GdbFpsr, "float"));
        regs.Add(new RegisterInfo("fpcr", 4, GdbFpcr, "float"));
        Registers = regs;
    }

    /// <summary>The one instance.</summary>
    public static Arm64Architecture Instance { get; } = new();

    /// <inheritdoc />
    public CpuArchitecture Kind => CpuArchitecture.Arm64;

    /// <inheritdoc />
    public string GdbArchitecture => "aarch64";

    /// <inheritdoc />
    public ushort ElfMachine => EmAarch64;

    /// <inheritdoc />
    public IReadOnlyList<RegisterInfo> Registers { get; }

    /// <inheritdoc />
    /// <remarks>AAPCS64 §6.8.2: x0–x7.</remarks>
    public IReadOnlyList<string> ArgumentRegisters { get; } = ["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"];
}
