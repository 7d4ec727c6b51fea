using System.Globalization;
using System.Runtime.InteropServices;

namespace VmState.Replay;

/// <summary>
/// Lets QEMU 7.2's reverse-continue complete on a multi-core host. Its second snapshot load comes from the timer that
/// ends the forward pass, while the VM runs: <c>vm_stop</c> drops the replay mutex while the vCPU stops, and takes it
/// back; the stopped vCPU thread (TCG's round-robin loop) must take that mutex once more before it idles and serves
/// work items, and the device reset of the load waits in <c>run_on_cpu</c> for it. When the main thread, woken on
/// another core, takes the mutex back first, QEMU deadlocks (no QMP answer, 0% CPU; docs/benchmarks.md, "The peer
/// answers"). All of QEMU's threads on one CPU, with the main thread at the lowest priority, let the vCPU thread go
/// first; the replay itself runs on the vCPU thread, at its usual speed.
/// </summary>
public static unsafe partial class ReplayReversePinning
{
    /// <summary>The nice value of QEMU's main thread.</summary>
    public const int MainThreadNice = 19;

    private const int PrioProcess = 0;
    private const int ESrch = 3;
    private const int MaskWords = 16; // 1,024 CPUs

    /// <summary>
    /// Pins every thread of QEMU process <paramref name="pid"/> to one CPU (the highest it may run on) and sets its main
    /// thread (whose thread id is <paramref name="pid"/>) to nice <see cref="MainThreadNice"/>; threads QEMU starts
    /// later inherit both from the thread that starts them. Returns the CPU.
    /// </summary>
    /// <exception cref="IOException">The process is gone or the kernel refused.</exception>
    public static int Apply(int pid)
    {
        ulong* mask = stackalloc ulong[MaskWords];
        var size = (nuint)(MaskWords * sizeof(ulong));
        if (SchedGetaffinity(pid, size, mask) != 0)
        {
            throw Error($"sched_getaffinity of QEMU {pid}");
        }

        int cpu = -1;
        for (int i = (MaskWords * 64) - 1; i >= 0 && cpu < 0; i--)
        {
            if ((mask[i / 64] & (1UL << (i % 64))) != 0)
            {
                cpu = i;
            }
        }

        if (cpu < 0)
        {
            throw new IOException(string.Create(CultureInfo.InvariantCulture, $"QEMU {pid} may run on no CPU"));
        }

        ulong* one = stackalloc ulong[MaskWords];
        new Span<ulong>(one, MaskWords).Clear();
        one[cpu / 64] = 1UL << (cpu % 64);
        string tasks = string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/task");
        string[] threads;
        try
        {
            threads = Directory.GetDirectories(tasks);
        }
        catch (DirectoryNotFoundException)
        {
            throw new IOException(string.Create(CultureInfo.InvariantCulture, $"QEMU {pid} is gone ({tasks} does not exist)"));
        }

        foreach (string thread in threads)
        {
            if (!int.TryParse(Path.GetFileName(thread), NumberStyles.None, CultureInfo.InvariantCulture, out int tid))
            {
                continue;
            }

            // A thread that ended meanwhile (ESRCH) needs no pinning.
            if (SchedSetaffinity(tid, size, one) != 0 && Marshal.GetLastPInvokeError() != ESrch)
            {
                throw Error($"sched_setaffinity of QEMU {pid}'s thread {tid}");
            }
        }

        if (SetPriority(PrioProcess, pid, MainThreadNice) != 0)
        {
            throw Error($"setpriority of QEMU {pid}'s main thread");
        }

        return cpu;
    }

    private static IOException Error(string what) =>
        new(string.Create(CultureInfo.InvariantCulture, $"{what}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}"));

    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetaffinity(int pid, nuint size, ulong* mask);

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetaffinity(int pid, nuint size, ulong* mask);

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, int who, int priority);
}
