using VmState.Arch.X86;
using VmState.Linux;

namespace VmState.Native;

/// <summary>
/// What one C handle holds: the <see cref="Vm"/>, the pause the caller took, and the address spaces resolved by pid.
/// Every call on a handle runs under <see cref="Gate"/>, so a handle shared between threads is used one call at a time
/// (<see cref="AddressSpace"/>'s caches are not thread-safe).
/// </summary>
internal sealed class NativeSession : IDisposable
{
    // Files only: a snapshot's page tables cannot change, so a process's address space is found once. A running
    // guest's pids and page tables can, so there each call looks the task up again.
    private readonly Dictionary<int, AddressSpace> _spaces = [];

    public NativeSession(Vm vm)
    {
        Vm = vm;
    }

    /// <summary>The VM.</summary>
    public Vm Vm { get; }

    /// <summary>Held for the duration of every call on this handle.</summary>
    public object Gate { get; } = new();

    /// <summary>The pause taken by <c>vmstate_pause</c> or <c>VMSTATE_ATTACH_PAUSE</c>, until <c>vmstate_resume</c>.</summary>
    public VmPause? Pause { get; set; }

    /// <summary>
    /// The address space of <paramref name="pid"/>: the kernel's for 0, else the process's user space (its
    /// <c>mm-&gt;pgd</c>). A running guest's translation caches are dropped first, since its page tables change.
    /// </summary>
    /// <exception cref="VmStateNotFoundException">No task has that pid.</exception>
    /// <exception cref="KernelDataException">A kernel thread (no user memory), or no kernel was found.</exception>
    public AddressSpace Space(int pid)
    {
        LinuxKernel kernel = Vm.Linux.Kernel;
        if (pid == 0)
        {
            if (Vm.IsLive)
            {
                kernel.AddressSpace.Invalidate();
            }

            return kernel.AddressSpace;
        }

        if (_spaces.TryGetValue(pid, out AddressSpace? cached))
        {
            return cached;
        }

        KernelObject mm = MemoryMaps.UserMm(MemoryMaps.FindTask(kernel, pid));
        AddressSpace space = kernel.ProcessAddressSpace(mm.Member("pgd").ToUInt64());
        if (!Vm.IsLive)
        {
            _spaces[pid] = space;
        }

        return space;
    }

    /// <summary>True once <see cref="Dispose"/> has run (another thread closed the handle while this one waited).</summary>
    public bool IsClosed { get; private set; }

    /// <summary>Ends the caller's pause (the guest runs again if it stopped it), then closes the VM. Never throws.</summary>
    public void Dispose()
    {
        IsClosed = true;
        Pause?.Dispose();
        Pause = null;
        Vm.Dispose();
    }
}
