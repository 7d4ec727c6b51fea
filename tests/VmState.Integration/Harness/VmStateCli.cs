using System.Diagnostics;

namespace VmState.Integration.Harness;

/// <summary>Runs the vmstate CLI (the built vmstate.dll next to the tests) as a user would.</summary>
public static class VmStateCli
{
    public static (int ExitCode, string Stdout, string Stderr) Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "vmstate.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        foreach ((string k, string v) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }

        using Process p = Process.Start(psi)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(true);
            throw new TimeoutException($"vmstate {string.Join(' ', args)} did not finish in 5 minutes");
        }

        return (p.ExitCode, stdout, stderr.Result);
    }
}
