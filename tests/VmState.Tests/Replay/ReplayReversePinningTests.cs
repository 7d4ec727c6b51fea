using System.Diagnostics;
using System.Globalization;
using VmState.Replay;

namespace VmState.Tests.Replay;

public sealed class ReplayReversePinningTests
{
    [Fact]
    public void EveryThreadRunsOnOneCpuAndTheMainThreadAtNice19()
    {
        // A real process with several threads (python3 with two started threads that sleep), read back from /proc.
        using var child = Process.Start(new ProcessStartInfo("python3", ["-c", "import threading, time\nfor _ in range(2): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\nprint('ready', flush=True)\ntime.sleep(30)"])
        {
            RedirectStandardOutput = true,
        })!;
        try
        {
            Assert.Equal("ready", child.StandardOutput.ReadLine());
            string[] threads = Directory.GetDirectories($"/proc/{child.Id}/task");
            Assert.Equal(3, threads.Length);

            int cpu = ReplayReversePinning.Apply(child.Id);

            Assert.InRange(cpu, 0, Environment.ProcessorCount - 1);
            foreach (string thread in threads)
            {
                string allowed = File.ReadAllLines(Path.Combine(thread, "status")).Single(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal));
                Assert.Equal(cpu.ToString(CultureInfo.InvariantCulture), allowed.Split(':')[1].Trim());
            }

            Assert.Equal(ReplayReversePinning.MainThreadNice, Nice(child.Id, child.Id));
            Assert.All(threads.Select(t => int.Parse(Path.GetFileName(t), CultureInfo.InvariantCulture)).Where(t => t != child.Id), t => Assert.Equal(0, Nice(child.Id, t)));
        }
        finally
        {
            child.Kill();
            child.WaitForExit();
        }
    }

    [Fact]
    public void AProcessThatIsGoneIsAClearError()
    {
        using var child = Process.Start("true")!;
        child.WaitForExit();
        IOException e = Assert.Throws<IOException>(() => ReplayReversePinning.Apply(child.Id));
        Assert.Contains(child.Id.ToString(CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
    }

    // Field 19 of /proc/PID/task/TID/stat (after the command name in parentheses: field 17 of the rest).
    private static int Nice(int pid, int tid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/task/{tid}/stat");
        string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return int.Parse(rest[16], CultureInfo.InvariantCulture);
    }
}
