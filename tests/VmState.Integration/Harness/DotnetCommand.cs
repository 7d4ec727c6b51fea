using System.Diagnostics;

namespace VmState.Integration.Harness;

/// <summary>Runs the <c>dotnet</c> host (pack, restore, run) as a user would, and times it.</summary>
public static class DotnetCommand
{
    /// <summary>The outcome of one run.</summary>
    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
    {
        /// <summary>For assertion messages: the exit code and both streams.</summary>
        public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
    }

    /// <summary>Runs <c>dotnet ARGS</c> in <paramref name="workingDirectory"/>; kills it after <paramref name="timeout"/>.</summary>
    public static Result Run(string workingDirectory, IEnumerable<string> args, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        // The test host's own MSBuild settings (set by dotnet test) would leak into the child's build.
        psi.Environment.Remove("MSBuildSDKsPath");
        psi.Environment.Remove("MSBuildExtensionsPath");
        psi.Environment.Remove("MSBUILD_EXE_PATH");
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach ((string k, string v) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }

        var clock = Stopwatch.StartNew();
        using Process p = Process.Start(psi)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(true);
            throw new TimeoutException($"dotnet {string.Join(' ', psi.ArgumentList)} did not finish in {timeout}");
        }

        return new Result(p.ExitCode, stdout.Result, stderr.Result, clock.Elapsed);
    }
}
