using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace VmState.Integration.Harness;

/// <summary>
/// gdb attached to a remote stub and fed commands on its standard input, a batch at a time, so a test can look at the
/// target between two commands (over QMP, say) while gdb stays attached; <see cref="RunAsync"/> returns a batch's output.
/// Disposing quits gdb (or kills it).
/// </summary>
public sealed class GdbSession : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private int _batch;

    private GdbSession(Process process)
    {
        _process = process;
        process.ErrorDataReceived += (_, e) =>
        {
            lock (_stderr)
            {
                _stderr.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();
    }

    /// <summary>Starts gdb and connects it to 127.0.0.1:<paramref name="port"/>.</summary>
    public static async Task<GdbSession> StartAsync(int port, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo("gdb") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in (string[])["-nx", "-q", "-ex", "set pagination off", "-ex", "set confirm off", "-ex", "set width 0"])
        {
            psi.ArgumentList.Add(a);
        }

        var session = new GdbSession(Process.Start(psi) ?? throw new InvalidOperationException("gdb is not installed (run eng/install-deps.sh)"));
        string connect = await session.RunAsync([string.Create(CultureInfo.InvariantCulture, $"target remote 127.0.0.1:{port}")], timeout);
        if (!connect.Contains("Remote debugging using", StringComparison.Ordinal))
        {
            await session.DisposeAsync();
            throw new InvalidOperationException($"gdb did not connect to 127.0.0.1:{port}: {connect}");
        }

        return session;
    }

    /// <summary>
    /// Runs <paramref name="commands"/> and returns what gdb printed for them (standard output and error); a batch
    /// that has not finished within <paramref name="timeout"/> is a <see cref="TimeoutException"/> with its output so far.
    /// </summary>
    public async Task<string> RunAsync(IEnumerable<string> commands, TimeSpan timeout)
    {
        string marker = string.Create(CultureInfo.InvariantCulture, $"@@GDB-BATCH-{++_batch}@@");
        lock (_stderr)
        {
            _stderr.Clear();
        }

        foreach (string c in commands)
        {
            await _process.StandardInput.WriteLineAsync(c);
        }

        await _process.StandardInput.WriteLineAsync($"echo {marker}\\n");
        await _process.StandardInput.FlushAsync();
        var output = new StringBuilder();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                string? line = await _process.StandardOutput.ReadLineAsync(cts.Token);
                if (line is null)
                {
                    throw new IOException($"gdb exited during the batch: {output}{Stderr()}");
                }

                if (line.Contains(marker, StringComparison.Ordinal))
                {
                    break;
                }

                output.AppendLine(line);
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"gdb did not finish {string.Join("; ", commands)} in {timeout.TotalSeconds:F0} s: {output}{Stderr()}");
        }

        // stderr is read on its own thread: give it a moment to catch up with stdout.
        await Task.Delay(100);
        return output + Stderr();
    }

    private string Stderr()
    {
        lock (_stderr)
        {
            return _stderr.ToString();
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                await _process.StandardInput.WriteLineAsync("detach");
                await _process.StandardInput.WriteLineAsync("quit");
                _process.StandardInput.Close();
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }
        }
        catch (Exception e) when (e is IOException or TimeoutException)
        {
        }
        finally
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }

            _process.Dispose();
        }
    }
}
