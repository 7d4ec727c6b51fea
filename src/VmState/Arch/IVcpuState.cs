namespace VmState.Arch;

/// <summary>The part of one vCPU's saved state that every architecture has.</summary>
public interface IVcpuState
{
    /// <summary>QEMU's cpu_index.</summary>
    int Index { get; }

    /// <summary>The architecture of the vCPU.</summary>
    IArchitecture Architecture { get; }

    /// <summary>The program counter.</summary>
    ulong ProgramCounter { get; }

    /// <summary>The stack pointer in use.</summary>
    ulong StackPointer { get; }

    /// <summary>True when the vCPU was halted (waiting for an interrupt), when known.</summary>
    bool? Halted { get; }

    /// <summary>The value of a register of <see cref="IArchitecture.Registers"/> by name, or null for any other name.</summary>
    ulong? GetRegister(string name);
}
