using System.Diagnostics;

namespace VmState.Integration.Harness;

/// <summary>Runs a host program (bash, python3, cc, a compiled test program) and collects what it printed.</summary>
public static class HostCommand
{
    /// <summary>The outcome of one run.</summary>
    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
    {
        /// <summary>For assertion messages: the exit code and both streams.</summary>
        public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
    }

    /// <summary>Runs <paramref name="program"/> with <paramref name="args"/>; kills it after <paramref name="timeout"/>.</summary>
    public static Result Run(string program, IEnumerable<string> args, string workingDirectory, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        // The test host's own MSBuild settings (set by dotnet test) would leak into any dotnet build the child runs.
        psi.Environment.Remove("MSBuildSDKsPath");
        psi.Environment.Remove("MSBuildExtensionsPath");
        psi.Environment.Remove("MSBUILD_EXE_PATH");
        foreach ((string k, string v) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }

        var clock = Stopwatch.StartNew();
        using Process p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {program}");
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(true);
            throw new TimeoutException($"{program} {string.Join(' ', psi.ArgumentList)} did not finish in {timeout}");
        }

        return new Result(p.ExitCode, stdout.Result, stderr.Result, clock.Elapsed);
    }
}
