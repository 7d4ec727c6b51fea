using VmState.Linux;
using VmState.Live;
using VmState.Machine;

namespace VmState.Replay;

/// <summary>
/// A replay paused at instruction counts and read through the live path: a <see cref="ReplaySession"/>, the live
/// attach on its user QMP socket (guest RAM read from QEMU's process), and the guest kernel, located once and kept for
/// the rest of the run (its page-table caches are dropped at every stop, since the guest ran in between).
/// </summary>
internal sealed class ReplayProbe : IAsyncDisposable
{
    private static readonly KernelLocatorOptions s_cheap = new() { UseBannerScan = false };

    /// <summary>The vCPU's page tables alone: no RAM scan for VMCOREINFO (about 0.1-0.2 s for 256 MiB at every early stop).</summary>
    private static readonly KernelLocatorOptions s_pageTablesOnly = new() { UseVmcoreinfo = false, UseBannerScan = false };
    private readonly LiveMachine _live;
    private LinuxKernel? _kernel;
    private string? _kernelError;
    private ulong _kernelAt = ulong.MaxValue;

    private ReplayProbe(ReplaySession session, LiveMachine live)
    {
        Session = session;
        _live = live;
    }

    public ReplaySession Session { get; }

    /// <summary>Guest-physical memory, read live.</summary>
    public LiveMemory Memory => _live.Memory;

    /// <summary>The live machine (QMP, memory).</summary>
    public LiveMachine Live => _live;

    /// <summary>The replay's current instruction count (kept here: no QMP round trip).</summary>
    public ulong At { get; private set; }

    public static async Task<ReplayProbe> StartAsync(ReplayRecording recording, string workDirectory, int? gdbPort, CancellationToken cancellationToken, ReplayCheckpoints? checkpoints = null, ulong start = 0)
    {
        ReplaySession session = await ReplaySession.StartAsync(recording, workDirectory, gdbPort, cancellationToken, checkpoints, start).ConfigureAwait(false);
        try
        {
            LiveMachine live = await LiveMachine.AttachAsync(session.Info.QmpSocket, cancellationToken).ConfigureAwait(false);
            return new ReplayProbe(session, live) { At = await session.IcountAsync(cancellationToken).ConfigureAwait(false) };
        }
        catch
        {
            await session.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Runs on to <paramref name="icount"/> (after the current count); false when the replay ended before.</summary>
    public async Task<bool> RunToAsync(ulong icount, CancellationToken cancellationToken)
    {
        if (icount == At)
        {
            return true;
        }

        At = await Session.RunToAsync(icount, cancellationToken).ConfigureAwait(false);
        return !Session.Ended && At == icount;
    }

    /// <summary>Takes the count from QEMU (after the replay was moved by something else: a gdb stop).</summary>
    public async Task<ulong> RefreshAsync(CancellationToken cancellationToken)
    {
        At = await Session.IcountAsync(cancellationToken).ConfigureAwait(false);
        return At;
    }

    /// <summary>
    /// The guest kernel as it is now, or null while the Linux layer cannot find one (early boot); <see cref="KernelError"/> says why.
    /// </summary>
    public async Task<LinuxKernel?> KernelAsync(CancellationToken cancellationToken)
    {
        if (_kernel is not null)
        {
            _kernel.AddressSpace.Invalidate();
            return _kernel;
        }

        if (_kernelAt == At)
        {
            return null;
        }

        _kernelAt = At;
        MachineState machine = await _live.ToMachineStateAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // The cheap sources only (VMCOREINFO, the vCPU's page tables): before the kernel is up a physical scan of
            // all RAM for a banner or kallsyms finds nothing, at the cost of seconds per stop. On x86 the page tables
            // are tried alone first: until they map the kernel there is none to read, and the VMCOREINFO RAM scan
            // would only repeat at every early stop (4 of the index pass's 5 s of reading on the fixture's boot).
            if (machine.Architecture == Arch.CpuArchitecture.X86_64)
            {
                _ = KernelLocator.Locate(machine, s_pageTablesOnly);
            }

            _kernel = KernelLocator.Locate(machine, s_cheap);
            _kernelError = null;
        }
        catch (VmStateException e)
        {
            _kernelError = e.Message;
        }

        return _kernel;
    }

    /// <summary>
    /// Drops the kernel located earlier, so the next <see cref="KernelAsync"/> at another count locates it afresh: a
    /// kernel located early in the boot reads through the page tables the vCPU had then (the boot's early ones, torn
    /// down later), and its lists cannot be read until they are initialised.
    /// </summary>
    public void ForgetKernel(string why)
    {
        _kernel = null;
        _kernelAt = At;
        _kernelError = why;
    }

    /// <summary>Why <see cref="KernelAsync"/> found no kernel at the last try.</summary>
    public string KernelError => _kernelError ?? "no kernel read yet";

    public async ValueTask DisposeAsync()
    {
        await _live.DisposeAsync().ConfigureAwait(false);
        await Session.DisposeAsync().ConfigureAwait(false);
    }
}
