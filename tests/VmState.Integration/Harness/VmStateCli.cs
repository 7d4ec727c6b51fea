using System.Diagnostics;

namespace VmState.Integration.Harness;

/// <summary>
/// Runs the vmstate CLI as a user would: the built vmstate.dll next to the tests, or the executable named by
/// VMSTATE_CLI_EXE (e.g. the Native AOT build of eng/publish.sh, to run the whole suite against it).
/// </summary>
public static class VmStateCli
{
    public static (int ExitCode, string Stdout, string Stderr) Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        string? exe = Environment.GetEnvironmentVariable("VMSTATE_CLI_EXE");
        var psi = new ProcessStartInfo(string.IsNullOrEmpty(exe) ? "dotnet" : exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (string.IsNullOrEmpty(exe))
        {
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmstate.dll"));
        }

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
