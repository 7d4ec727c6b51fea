using VmState.Arch;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Gdb;

/// <summary>The one place that picks the GDB server's view of a machine by its CPU architecture.</summary>
internal static class GdbTargetArchitectures
{
    /// <summary>The architecture of <paramref name="machine"/>'s vCPUs, reading memory from <paramref name="memory"/> (the overlay when editing).</summary>
    /// <exception cref="ArgumentException">The machine has no vCPU state.</exception>
    public static IGdbTargetArchitecture For(MachineState machine, IPhysicalMemory memory)
    {
        if (machine.Vcpus.Count == 0)
        {
            throw new ArgumentException($"{machine.SourcePath} has no vCPU state to debug");
        }

        return machine.Architecture switch
        {
            CpuArchitecture.Arm64 => new Arm64GdbArchitecture(machine.Arm64Cpus, memory),
            _ => new X86GdbArchitecture(machine.Cpus, memory),
        };
    }
}
