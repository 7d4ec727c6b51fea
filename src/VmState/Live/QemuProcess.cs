using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace VmState.Live;

/// <summary>
/// A qemu-system process VmState started and drives over QMP: its output kept (the last 64 KiB, for error messages),
/// its QMP socket connected once QEMU listens on it. QEMU runs in a session of its own (<c>setsid</c>), so a Ctrl-C at
/// the terminal reaches VmState, which ends the run over QMP, and not QEMU, which would end it by itself.
/// </summary>
public sealed class QemuProcess : IAsyncDisposable
{
    private const int OutputLimit = 64 << 10;
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private QemuProcess(Process process, QemuArguments arguments)
    {
        _process = process;
        Arguments = arguments;
    }

    /// <summary>The command line QEMU was started with.</summary>
    public QemuArguments Arguments { get; }

    /// <summary>QEMU's process id.</summary>
    public int ProcessId => _process.Id;

    /// <summary>True once QEMU has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>QEMU's exit code (valid once it has exited).</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>The end of what QEMU wrote to its standard output and error.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>
    /// Starts <paramref name="arguments"/> and connects to <paramref name="qmpSocket"/> (one of its <c>-qmp</c>
    /// sockets) within <paramref name="timeout"/>; QEMU is killed when that fails.
    /// </summary>
    /// <exception cref="IOException">QEMU exited before it listened on the socket (its output is in the message).</exception>
    /// <exception cref="TimeoutException">It did not listen in time.</exception>
    public static async Task<(QemuProcess Process, QmpClient Qmp)> StartAsync(QemuArguments arguments, string qmpSocket, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(qmpSocket);
        var psi = new ProcessStartInfo("setsid")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string word in arguments.ToArgv())
        {
            psi.ArgumentList.Add(word);
        }

        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new IOException($"{arguments.Program} did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new IOException($"cannot start {arguments.Program} through setsid: {e.Message}", e);
        }

        var qemu = new QemuProcess(process, arguments);
        process.StandardInput.Close();
        process.OutputDataReceived += (_, e) => qemu.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => qemu.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                if (process.HasExited)
                {
                    await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
                    throw new IOException($"{arguments.Program} exited with code {process.ExitCode} before it opened QMP: {qemu.Output.Trim()}");
                }

                if (File.Exists(qmpSocket))
                {
                    try
                    {
                        QmpClient qmp = await QmpClient.ConnectAsync(qmpSocket, TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
                        return (qemu, qmp);
                    }
                    catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
                    {
                        // QEMU binds the socket a moment before it listens on it.
                    }
                }

                if (clock.Elapsed > timeout)
                {
                    throw new TimeoutException($"{arguments.Program} did not open its QMP socket {qmpSocket} within {timeout.TotalSeconds:F0} s: {qemu.Output.Trim()}");
                }

                await Task.Delay(20, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            await qemu.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Waits for QEMU to exit.</summary>
    public Task WaitForExitAsync(CancellationToken cancellationToken = default) => _process.WaitForExitAsync(cancellationToken);

    /// <summary>Waits up to <paramref name="timeout"/> for QEMU to exit; true when it did.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Kills QEMU if it still runs and waits for it.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            await _process.WaitForExitAsync().ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    private void Keep(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
            if (_output.Length > OutputLimit)
            {
                _output.Remove(0, _output.Length - OutputLimit);
            }
        }
    }
}
