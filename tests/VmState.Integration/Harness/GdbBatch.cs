using System.Diagnostics;

namespace VmState.Integration.Harness;

/// <summary>gdb in batch mode on a core file.</summary>
public static class GdbBatch
{
    /// <summary>Runs gdb -batch with <paramref name="commands"/>, on <paramref name="core"/> unless it is empty.</summary>
    public static (int ExitCode, string Output) Run(string core, params string[] commands) => RunWith("gdb", core, commands);

    /// <summary>Like <see cref="Run"/> with another gdb, e.g. gdb-multiarch for an AArch64 core.</summary>
    public static (int ExitCode, string Output) RunWith(string gdb, string core, params string[] commands)
    {
        var psi = new ProcessStartInfo(gdb) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in core.Length == 0 ? new[] { "-nx", "-batch" } : new[] { "-nx", "-batch", "-c", core })
        {
            psi.ArgumentList.Add(a);
        }

        foreach (string c in commands)
        {
            psi.ArgumentList.Add("-ex");
            psi.ArgumentList.Add(c);
        }

        using Process p = Process.Start(psi) ?? throw new InvalidOperationException($"{gdb} is not installed (run eng/install-deps.sh)");
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(true);
            throw new TimeoutException("gdb did not finish in 2 minutes");
        }

        return (p.ExitCode, stdout + stderr.Result);
    }
}
