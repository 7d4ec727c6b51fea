namespace VmState.Arch;

/// <summary>
/// What differs between guest architectures and is not a vCPU's state: the register file, the registers that carry
/// function arguments, the ELF machine number of cores and the gdb architecture name.
/// </summary>
public interface IArchitecture
{
    /// <summary>Which architecture this is.</summary>
    CpuArchitecture Kind { get; }

    /// <summary>The name gdb's <c>set architecture</c> takes (e.g. "aarch64", "i386:x86-64").</summary>
    string GdbArchitecture { get; }

    /// <summary>e_machine of this architecture's ELF cores.</summary>
    ushort ElfMachine { get; }

    /// <summary>The registers of gdb's core target description, by gdb number.</summary>
    IReadOnlyList<RegisterInfo> Registers { get; }

    /// <summary>The registers that carry the first integer arguments of a call (the procedure call standard).</summary>
    IReadOnlyList<string> ArgumentRegisters { get; }
}
