using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using VmState.History;
using VmState.Linux;
using VmState.Live;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState;

/// <summary>
/// A virtual machine, from a snapshot file or a running QEMU: the library's front door. <see cref="Open"/> takes
/// every snapshot kind (migration stream, virsh save, qcow2 internal snapshot, ELF core, raw image),
/// <see cref="AttachAsync"/> a running QEMU's QMP socket; both give the same object, which owns everything it
/// opened until it is disposed (synchronously or asynchronously, whichever kind it is).
/// </summary>
/// <example>
/// <code>
/// await using Vm vm = await Vm.AttachAsync("/run/qemu/qmp.sock");
/// await using (await vm.PauseAsync())
/// {
///     foreach (LinuxProcess p in vm.Linux.Processes())
///     {
///         Console.WriteLine($"{p.Pid} {p.Comm}");
///     }
/// }
/// </code>
/// </example>
public sealed class Vm : IDisposable, IAsyncDisposable
{
    private readonly object _gate = new();
    private readonly List<VmPause> _pauses = [];
    private readonly Action<Exception>? _resumeFailed;
    private readonly VmLiveControl? _liveControl;
    private readonly VmWritableMemory? _writableMemory;
    private MachineState? _machine;
    private int _disposed;

    private Vm(MachineState? machine, LiveMachine? live, KernelLocatorOptions? kernel, Action<Exception>? resumeFailed)
    {
        _machine = machine;
        Live = live;
        _resumeFailed = resumeFailed;
        if (live is not null)
        {
            _liveControl = new VmLiveControl(this, live.Qmp);
            _writableMemory = live.Memory.Fallback is null ? new VmWritableMemory(live.Memory) : null;
        }

        Linux = new LinuxGuest(() => Machine, kernel);
    }

    /// <summary>
    /// The machine: memory, vCPUs, devices. For a running VM, memory is read live and the registers are those read
    /// when attaching or when the last <see cref="PauseAsync"/> stopped the guest.
    /// </summary>
    public MachineState Machine
    {
        // Small enough to inline into a caller's loop (vm.Machine.Memory.Read per read); the throws are in Unusable.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            MachineState? machine = _machine;
            return machine is not null && Volatile.Read(ref _disposed) == 0 ? machine : Unusable();
        }
    }

    private MachineState Unusable()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        throw new InvalidOperationException("the machine state has not been read yet");
    }

    /// <summary>
    /// What the VM was opened from: <see cref="MachineOrigin.Kind"/>, the path (for a running QEMU, <c>qmp:</c> and
    /// its socket) and a description; a format's own origin type carries more (a qcow2 snapshot's id in
    /// <see cref="Qcow2SnapshotOrigin"/>, an ELF core's notes in <c>ElfCoreOrigin</c>).
    /// </summary>
    public MachineOrigin Origin => Machine.Origin;

    /// <summary>True for a running QEMU (<see cref="AttachAsync"/>).</summary>
    public bool IsLive => Live is not null;

    /// <summary>The running QEMU (QMP, live memory), or null for a snapshot.</summary>
    public LiveMachine? Live { get; }

    /// <summary>The guest's Linux kernel and its views, located on first use.</summary>
    public LinuxGuest Linux { get; }

    /// <summary>
    /// Asks whether this VM can do <typeparamref name="T"/>, and gives the object that does it. The capabilities:
    /// <list type="table">
    /// <item><term><see cref="IPhysicalMemory"/></term><description>guest-physical memory: always.</description></item>
    /// <item><term><see cref="ISparseMemory"/></term><description>memory that knows its all-zero pages without reading
    /// them: a migration stream's (also in a <c>virsh save</c> file or a qcow2 snapshot).</description></item>
    /// <item><term><see cref="ISpanMemory"/></term><description>memory lent in place without a copy: a running guest's
    /// RAM on a shared memory backend (<see cref="PhysicalMemoryScan"/> scans and hashes it where it lies).</description></item>
    /// <item><term><see cref="IWritableMemory"/></term><description>memory that can be written: a running guest's when
    /// its RAM is reached through shared mappings or QEMU's process memory (not through the read-only QMP or gdbstub
    /// fallbacks). A snapshot file is opened read-only; edit it with <c>VmState.Editing.SnapshotEditor</c>.</description></item>
    /// <item><term><see cref="IVcpuRegisters"/></term><description>vCPU registers: every input with at least one vCPU
    /// (not a raw image).</description></item>
    /// <item><term><see cref="IDeviceStates"/></term><description>saved device state: migration streams, <c>virsh
    /// save</c> files and qcow2 snapshots.</description></item>
    /// <item><term><see cref="ILiveControl"/></term><description>run state, pause, resume: a running VM.</description></item>
    /// <item><term><see cref="ISnapshotting"/></term><description>saving the state to a file: a running VM.</description></item>
    /// </list>
    /// Any other type gives false.
    /// </summary>
    /// <example>
    /// <code>
    /// if (vm.TryGet(out IWritableMemory? ram))
    /// {
    ///     ram.Write(address, bytes);
    /// }
    /// </code>
    /// </example>
    public bool TryGet<T>([NotNullWhen(true)] out T? capability)
        where T : class
    {
        MachineState machine = Machine;
        object? found = typeof(T) switch
        {
            Type t when t == typeof(IPhysicalMemory) => machine.Memory,
            Type t when t == typeof(ISparseMemory) => machine.Memory as ISparseMemory,
            Type t when t == typeof(ISpanMemory) => machine.Memory is LiveMemory { SharedBytes: 0 } ? null : machine.Memory as ISpanMemory,
            Type t when t == typeof(IWritableMemory) => _writableMemory,
            Type t when t == typeof(IVcpuRegisters) => machine.Cpus.Count > 0 ? machine : null,
            Type t when t == typeof(IDeviceStates) => machine.Devices.Count > 0 ? machine : null,
            Type t when t == typeof(ILiveControl) || t == typeof(ISnapshotting) => _liveControl,
            _ => null,
        };
        capability = found as T;
        return capability is not null;
    }

    /// <summary>True when this VM can do <typeparamref name="T"/> (<see cref="TryGet{T}"/>).</summary>
    public bool Can<T>()
        where T : class => TryGet<T>(out _);

    /// <summary>
    /// Opens a snapshot file of any supported kind, recognised by its first bytes, or a capture of a history store
    /// (<c>STORE@N</c>, <c>STORE@-1</c> for the latest, <c>STORE@2026-11-29T10:05:00</c> for the latest at or before
    /// a time; see <see cref="HistoryStore"/>).
    /// </summary>
    /// <param name="path">The migration stream, virsh save file, qcow2 image, ELF core, (with <see cref="VmOpenOptions.AllowRaw"/>) raw image, or <c>STORE@SELECTOR</c>.</param>
    /// <param name="options">Which qcow2 snapshot, raw images, caching, kernel location; null for the defaults.</param>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="IO.VmStateFormatException">The file is not a supported input, or is malformed (with the offset).</exception>
    /// <exception cref="VmStateNotFoundException">A qcow2 image has no snapshot of the name given (<see cref="VmStateObjectKind.Snapshot"/>).</exception>
    public static Vm Open(string path, VmOpenOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        options ??= new VmOpenOptions();
        MachineState machine = !File.Exists(path) && HistoryStore.TryParseReference(path, out string store, out string selector)
            ? HistoryStore.OpenMachine(store, selector, options.MainRam, options.Limits)
            : SnapshotLoader.Open(path, options.ToSnapshotOptions());
        return new Vm(machine, null, options.Kernel, null);
    }

    /// <summary>Attaches to a running QEMU through its QMP socket (QEMU serves one client per socket).</summary>
    /// <param name="qmpSocket">The QMP UNIX socket.</param>
    /// <param name="options">Whether to pause while attached, kernel location, resume-failure reporting; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the attach.</param>
    /// <exception cref="IOException">The socket cannot be reached, or there is no way to read guest memory.</exception>
    /// <exception cref="QmpException">QEMU refused a command.</exception>
    public static async Task<Vm> AttachAsync(string qmpSocket, VmAttachOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmpSocket);
        LiveMachine live = await LiveMachine.AttachAsync(qmpSocket, cancellationToken).ConfigureAwait(false);
        return await AttachLiveAsync(live, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Attaches to a running libvirt domain: QMP through libvirt's monitor passthrough, guest RAM from the domain's
    /// QEMU process on this host (found by the domain's UUID). libvirt marks the domain tainted (custom-monitor).
    /// </summary>
    /// <param name="uri">A libvirt URI, e.g. <c>qemu:///system</c>.</param>
    /// <param name="domain">The domain's name or UUID.</param>
    /// <param name="options">Whether to pause while attached, kernel location, resume-failure reporting; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the attach.</param>
    /// <exception cref="VmStateNotFoundException">libvirt has no such domain (<see cref="VmStateObjectKind.Domain"/>).</exception>
    /// <exception cref="IOException">libvirt is missing or unreachable, the domain is not running or runs on another host.</exception>
    /// <exception cref="QmpException">QEMU refused a command.</exception>
    public static async Task<Vm> AttachLibvirtAsync(string uri, string domain, VmAttachOptions? options = null, CancellationToken cancellationToken = default)
    {
        QmpClient qmp = await QmpClient.ConnectLibvirtAsync(uri, domain, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
        LiveMachine live;
        try
        {
            live = await LiveMachine.AttachAsync(qmp, ownsClient: true, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await qmp.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return await AttachLiveAsync(live, options, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<Vm> AttachLiveAsync(LiveMachine live, VmAttachOptions? options, CancellationToken cancellationToken)
    {
        options ??= new VmAttachOptions();
        var vm = new Vm(null, live, options.Kernel, options.ResumeFailed);
        try
        {
            if (options.Pause)
            {
                // Owned by the Vm (in _pauses), so disposing the Vm resumes the guest; PauseAsync reads the registers.
                await vm.PauseAsync(cancellationToken).ConfigureAwait(false);
            }
            else
            {
                vm._machine = await live.ToMachineStateAsync(cancellationToken).ConfigureAwait(false);
            }

            return vm;
        }
        catch
        {
            await vm.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Pauses a running guest until the returned scope is disposed (see <see cref="VmPause"/>: also resumed on
    /// SIGINT, SIGTERM, SIGHUP, SIGQUIT and process exit; a guest that was already paused stays paused). The
    /// registers in <see cref="Machine"/> are read again once the guest is stopped, and the cached Linux views are
    /// dropped, so what is read inside the scope is one consistent moment. Disposing the <see cref="Vm"/> disposes
    /// every scope still open. On a snapshot, which cannot run, the scope does nothing.
    /// </summary>
    /// <exception cref="QmpException">QEMU refused to stop the guest.</exception>
    public async Task<VmPause> PauseAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Live is null)
        {
            return VmPause.None();
        }

        VmPause pause = await VmPause.StartAsync(Live.Qmp, _resumeFailed, Forget, cancellationToken).ConfigureAwait(false);
        lock (_gate)
        {
            _pauses.Add(pause);
        }

        try
        {
            // A live MachineState owns nothing (LiveMachine owns the memory), so the old one needs no disposal.
            _machine = await Live.ToMachineStateAsync(cancellationToken).ConfigureAwait(false);
            Linux.Refresh();
            return pause;
        }
        catch
        {
            await pause.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Resumes a guest paused by this object's scopes, then closes the file or the QMP connection.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>Resumes a guest paused by this object's scopes, then closes the file or the QMP connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        VmPause[] open;
        lock (_gate)
        {
            open = [.. _pauses];
            _pauses.Clear();
        }

        // Newest first: an inner scope taken on an already paused guest resumes nothing; the outermost one resumes.
        for (int i = open.Length - 1; i >= 0; i--)
        {
            await open[i].DisposeAsync().ConfigureAwait(false);
        }

        if (Live is not null)
        {
            await Live.DisposeAsync().ConfigureAwait(false);
        }
        else
        {
            _machine?.Dispose();
        }
    }

    private void Forget(VmPause pause)
    {
        lock (_gate)
        {
            _pauses.Remove(pause);
        }
    }
}
