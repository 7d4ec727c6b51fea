using System.Diagnostics;
using System.Net.Sockets;
using VmState.Live;

namespace VmState.Events;

/// <summary>
/// The guard of a trace: a separate process that outlives a tracer killed with SIGKILL and leaves the VM as it was.
/// QEMU 7.2 does nothing when a gdb client disconnects (gdbstub.c <c>gdb_chr_event</c> handles only
/// <c>CHR_EVENT_OPENED</c>): its breakpoints stay armed and the next hit stops the VM (run state <c>debug</c>) with
/// nobody to resume it; <c>gdbserver none</c> does not remove them either (both measured). Only a <c>D</c> (detach)
/// packet removes them (<c>gdb_process_breakpoint_remove_all</c>) and resumes the VM, and any new client may send it.
/// So the tracer starts the guard with a pipe on its standard input and writes <c>done</c> to it after cleaning up
/// itself. When the pipe closes without <c>done</c>, the tracer is gone, and the guard (<see cref="RecoverAsync"/>)
/// connects to the stub, sends <c>D</c>, and stops the stub if the tracer had started it.
/// </summary>
public sealed class TraceGuard : IDisposable
{
    private readonly Process _process;
    private bool _released;

    private TraceGuard(Process process)
    {
        _process = process;
    }

    /// <summary>
    /// The guard arguments the session appends to the guard command: how to reach the VM again (<c>--qmp SOCKET</c>,
    /// or <c>--libvirt URI --domain UUID</c>), the stub (<paramref name="endpoint"/>: host:port or <c>unix:PATH</c>),
    /// and whether to stop it.
    /// </summary>
    public static IReadOnlyList<string> Arguments(QmpClient qmp, string endpoint, bool stopStub)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        string[] vm = qmp.LibvirtDomain is LibvirtDomainInfo d ? ["--libvirt", qmp.LibvirtUri!, "--domain", d.Uuid.Length > 0 ? d.Uuid : d.Name] : ["--qmp", qmp.SocketPath];
        return [.. vm, "--stub", endpoint, stopStub ? "--stop-stub" : "--keep-stub"];
    }

    /// <summary>Starts the guard: <paramref name="command"/> followed by <see cref="Arguments"/>.</summary>
    /// <exception cref="InvalidOperationException">The guard did not start or did not say it was ready.</exception>
    public static TraceGuard Start(IReadOnlyList<string> command, QmpClient qmp, string endpoint, bool stopStub)
    {
        ArgumentNullException.ThrowIfNull(command);
        if (command.Count == 0)
        {
            throw new ArgumentException("the guard command is empty", nameof(command));
        }

        var info = new ProcessStartInfo(command[0])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (string a in command.Skip(1).Concat(Arguments(qmp, endpoint, stopStub)))
        {
            info.ArgumentList.Add(a);
        }

        Process process = Process.Start(info) ?? throw new InvalidOperationException($"the trace guard ({command[0]}) did not start");
        Task<string?> ready = process.StandardOutput.ReadLineAsync();
        if (!ready.Wait(TimeSpan.FromSeconds(30)) || ready.Result != "ready")
        {
            process.Kill();
            process.Dispose();
            throw new InvalidOperationException($"the trace guard ({command[0]}) did not report ready");
        }

        return new TraceGuard(process);
    }

    /// <summary>
    /// The guard's side: waits until <paramref name="tracer"/> (its standard input) closes; returns false when the
    /// tracer said <c>done</c> first, true when it vanished and <see cref="RecoverAsync"/> must run.
    /// </summary>
    public static async Task<bool> WaitForTracerAsync(TextReader tracer)
    {
        ArgumentNullException.ThrowIfNull(tracer);
        while (await tracer.ReadLineAsync().ConfigureAwait(false) is string line)
        {
            if (line == "done")
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Removes every gdb breakpoint and watchpoint and resumes the VM: connects to the stub at
    /// <paramref name="endpoint"/> (host:port or <c>unix:PATH</c>; retrying for 10 s while the old connection is torn
    /// down), sends <c>D</c>, and with <paramref name="stopStub"/> stops the stub through QMP (<c>gdbserver none</c>;
    /// <paramref name="connect"/> opens the VM's QMP connection, a socket or libvirt's passthrough) and removes the
    /// private directory of a UNIX-socket stub (<see cref="GdbTraceSession.PrivateDirectoryPrefix"/>). Returns what was
    /// done, one line per step.
    /// </summary>
    public static async Task<IReadOnlyList<string>> RecoverAsync(Func<CancellationToken, Task<QmpClient>> connect, string endpoint, bool stopStub, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(connect);
        var log = new List<string>();
        DateTime until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            try
            {
                using GdbRemoteChannel channel = GdbRemoteChannel.Connect(endpoint, TimeSpan.FromSeconds(2));
                string reply = channel.Detach(TimeSpan.FromSeconds(2));
                log.Add($"gdbstub {endpoint}: detach -> {(reply.Length == 0 ? "(empty)" : reply)}");
                break;
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
            {
                if (DateTime.UtcNow >= until)
                {
                    log.Add($"gdbstub {endpoint}: {e.Message}");
                    break;
                }

                await Task.Delay(200, cancellationToken).ConfigureAwait(false);
            }
        }

        if (stopStub)
        {
            try
            {
                await using QmpClient qmp = await connect(cancellationToken).ConfigureAwait(false);
                string said = await qmp.HumanMonitorCommandAsync("gdbserver none", cancellationToken: cancellationToken).ConfigureAwait(false);
                log.Add($"qmp: gdbserver none -> {said.Trim()}");
            }
            catch (Exception e) when (e is IOException or SocketException or QmpException or TimeoutException or VmStateNotFoundException)
            {
                log.Add($"qmp: {e.Message}");
            }

            if (GdbTraceSession.PrivateDirectoryOf(endpoint) is string directory)
            {
                GdbTraceSession.RemovePrivateDirectory(directory);
                log.Add($"removed {directory}");
            }
        }

        return log;
    }

    /// <summary>Tells the guard the tracer cleaned up itself, and waits for it to exit.</summary>
    public void Release()
    {
        if (_released)
        {
            return;
        }

        _released = true;
        try
        {
            _process.StandardInput.WriteLine("done");
            _process.StandardInput.Close();
            _process.WaitForExit(5000);
        }
        catch (IOException)
        {
            // The guard is already gone; nothing to tell it.
        }
    }

    /// <summary>
    /// Lets the guard go. Unless <see cref="Release"/> came first, its standard input closes without <c>done</c>, so
    /// it recovers the VM now (the tracer could not clean up itself).
    /// </summary>
    public void Dispose()
    {
        try
        {
            _process.StandardInput.Close();
        }
        catch (IOException)
        {
            // Already gone.
        }

        _process.Dispose();
    }
}
