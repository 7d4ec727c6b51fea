using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VmState.Live;

/// <summary>
/// Keeps a background snapshot from being cut off when the process reading it dies. QEMU 7.2 leaves a guest hung
/// (running, its vCPUs waiting on write faults nobody resolves) when a background snapshot fails once RAM is
/// write-protected — which is what happens when the reader of the capture pipe is killed (SIGKILL, the OOM killer)
/// and QEMU's next write gets EPIPE. The guard is a small process of its own (the CLI's hidden
/// <c>capture-guard</c>, in a session of its own so Ctrl-C of the terminal does not reach it), started once per
/// process the first time a capture needs it: for each capture it opens its own reference to the pipe's read end
/// (<c>/proc/PID/fd/N</c>), and lets it go when the capture is done. When this process dies, the guard's input ends;
/// it then reads and drops whatever the captures it still holds produce until QEMU closes them, so each background
/// snapshot completes and its guest runs on. A library user that sets no <see cref="Command"/> has no guard.
/// </summary>
public static partial class CaptureGuard
{
    private static readonly SemaphoreSlim s_gate = new(1, 1);
    private static Process? s_process;

    /// <summary>The command line that starts the guard (program and arguments); null (the default) means no guard.</summary>
    public static IReadOnlyList<string>? Command { get; set; }

    /// <summary>
    /// Has the guard hold its own reference to the pipe read end <paramref name="read"/> until the returned object is
    /// disposed; null when no guard is configured.
    /// </summary>
    /// <exception cref="IOException">The guard did not start or did not take the pipe.</exception>
    internal static async Task<IAsyncDisposable?> HoldAsync(SafeFileHandle read, CancellationToken cancellationToken)
    {
        if (Command is not { Count: > 0 } command)
        {
            return null;
        }

        int fd = (int)read.DangerousGetHandle();
        await s_gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Process guard = s_process is { HasExited: false } p ? p : s_process = Start(command);
            await guard.StandardInput.WriteLineAsync($"hold {fd.ToString(CultureInfo.InvariantCulture)}").ConfigureAwait(false);
            await guard.StandardInput.FlushAsync(cancellationToken).ConfigureAwait(false);
            string? ack = await guard.StandardOutput.ReadLineAsync(cancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            if (ack != "held")
            {
                throw new IOException($"the capture guard ({string.Join(' ', command)}) did not take the capture pipe: {ack ?? "it exited"}");
            }

            return new Hold(guard, fd);
        }
        catch (TimeoutException)
        {
            throw new IOException($"the capture guard ({string.Join(' ', command)}) did not answer in 30 s");
        }
        finally
        {
            s_gate.Release();
        }
    }

    /// <summary>
    /// The guard's own loop (run by the CLI's hidden command): <c>hold N</c> opens <c>/proc/PARENT/fd/N</c> and answers
    /// <c>held</c> (or <c>error ...</c>); <c>release N</c> closes it. At the end of <paramref name="input"/> (the
    /// parent exited or died), every pipe still held is read to its end and dropped. Returns the exit code.
    /// </summary>
    public static int Run(int parent, TextReader input, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        var held = new Dictionary<int, FileStream>();
        while (input.ReadLine() is string line)
        {
            string[] parts = line.Split(' ');
            if (parts.Length != 2 || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int fd))
            {
                output.WriteLine($"error: unknown request '{line}'");
                output.Flush();
                continue;
            }

            if (parts[0] == "hold")
            {
                string path = $"/proc/{parent.ToString(CultureInfo.InvariantCulture)}/fd/{parts[1]}";
                int opened = open(path, OReadOnly | OCloseOnExec);
                if (opened < 0)
                {
                    output.WriteLine($"error: cannot open {path}: errno {Marshal.GetLastPInvokeError()}");
                }
                else
                {
                    if (held.Remove(fd, out FileStream? old))
                    {
                        old.Dispose();
                    }

                    held[fd] = new FileStream(new SafeFileHandle(opened, ownsHandle: true), FileAccess.Read, 0);
                    output.WriteLine("held");
                }

                output.Flush();
            }
            else if (parts[0] == "release" && held.Remove(fd, out FileStream? s))
            {
                s.Dispose();
            }
        }

        // The parent is gone: let each capture it was reading run to its end.
        byte[] buffer = new byte[1 << 20];
        foreach (FileStream s in held.Values)
        {
            using (s)
            {
                try
                {
                    while (s.Read(buffer) > 0)
                    {
                    }
                }
                catch (IOException)
                {
                }
            }
        }

        return 0;
    }

    private static Process Start(IReadOnlyList<string> command)
    {
        // Every standard stream is a pipe of ours: the guard never holds the caller's terminal or output pipes open.
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in command.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        psi.ArgumentList.Add("--parent");
        psi.ArgumentList.Add(Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Process guard = Process.Start(psi) ?? throw new IOException($"{command[0]} did not start");
        _ = guard.StandardError.ReadToEndAsync();
        return guard;
    }

    private const int OReadOnly = 0;
    private const int OCloseOnExec = 0x80000;

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int open(string path, int flags);

    private sealed class Hold(Process guard, int fd) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            try
            {
                await guard.StandardInput.WriteLineAsync($"release {fd.ToString(CultureInfo.InvariantCulture)}").ConfigureAwait(false);
                await guard.StandardInput.FlushAsync().ConfigureAwait(false);
            }
            catch (IOException)
            {
                // The guard is gone: nothing holds the pipe but this process.
            }
        }
    }
}
