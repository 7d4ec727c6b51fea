using System.Diagnostics;

namespace VmState.Integration.Harness;

/// <summary>
/// Runs the vmstate CLI as a user would: the built vmstate.dll next to the tests, or the executable named by
/// VMSTATE_CLI_EXE (e.g. the Native AOT build of eng/publish.sh, to run the whole suite against it).
/// </summary>
public static class VmStateCli
{
    /// <summary>The longest one CLI run may take before the test fails (and the process tree is killed).</summary>
    public static readonly TimeSpan CliTimeout = TimeSpan.FromMinutes(5);

    private static readonly string s_indexCache = IndexCacheDirectory();

    public static (int ExitCode, string Stdout, string Stderr) Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        string? exe = Environment.GetEnvironmentVariable("VMSTATE_CLI_EXE");
        return string.IsNullOrEmpty(exe)
            ? RunDll(Path.Combine(AppContext.BaseDirectory, "vmstate.dll"), args, environment)
            : Start(new ProcessStartInfo(exe), args, environment);
    }

    /// <summary>Runs another build of the CLI, e.g. the pinned baseline of CliGoldenTests, with <c>dotnet DLL</c>.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunDll(string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo("dotnet");
        psi.ArgumentList.Add(dll);
        return Start(psi, args, environment);
    }

    /// <summary>
    /// Starts the CLI (the built vmstate.dll) without waiting, stdout and stderr redirected, for tests that talk to it
    /// while it runs (a trace they signal or read line by line); the caller disposes the process.
    /// </summary>
    public static Process StartBackground(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmstate.dll"));
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["VMSTATE_INDEX_CACHE"] = s_indexCache;
        return Process.Start(psi) ?? throw new InvalidOperationException("dotnet did not start");
    }

    /// <summary>This test process's index cache directory (removed when the process exits).</summary>
    private static string IndexCacheDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"vmstate-test-index-{Environment.ProcessId}");
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (DirectoryNotFoundException)
            {
            }
        };
        return dir;
    }

    private static (int ExitCode, string Stdout, string Stderr) Start(ProcessStartInfo psi, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment)
    {
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        // Every run gets this test process's own index cache directory unless the test names one, so the suite never
        // reads or writes the user's cache (the CLI keeps one by default).
        psi.Environment["VMSTATE_INDEX_CACHE"] = s_indexCache;
        foreach ((string k, string v) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }

        // Both pipes are read asynchronously so that the time limit holds even when the CLI (or a child that inherited
        // its pipes) never closes them; a synchronous ReadToEnd would wait for ever before the limit is checked.
        using Process p = Process.Start(psi)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(CliTimeout) || !Task.WaitAll([stdout, stderr], TimeSpan.FromSeconds(30)))
        {
            p.Kill(true);
            throw new TimeoutException($"vmstate {string.Join(' ', psi.ArgumentList)} did not finish in {CliTimeout.TotalMinutes} minutes");
        }

        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
