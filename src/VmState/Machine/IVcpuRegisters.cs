using VmState.Arch.X86;

namespace VmState.Machine;

/// <summary>
/// The registers of the guest's vCPUs: a migration stream's cpu sections, an ELF core's notes, a running QEMU's
/// <c>info registers</c>. As a capability of a <c>Vm</c> (<c>vm.TryGet&lt;IVcpuRegisters&gt;</c>) it is given
/// only when the input has at least one vCPU; a raw memory image has none.
/// </summary>
public interface IVcpuRegisters
{
    /// <summary>vCPUs ordered by index.</summary>
    IReadOnlyList<X86CpuState> Cpus { get; }
}
