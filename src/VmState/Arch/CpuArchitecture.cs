namespace VmState.Arch;

/// <summary>The guest CPU architecture of a machine state.</summary>
public enum CpuArchitecture
{
    /// <summary>x86-64 (QEMU's qemu-system-x86_64; also 32-bit guests in its legacy modes).</summary>
    X86_64,

    /// <summary>AArch64 (QEMU's qemu-system-aarch64, the "virt" machine).</summary>
    Arm64,
}
