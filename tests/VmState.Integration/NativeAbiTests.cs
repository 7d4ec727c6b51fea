using System.Reflection;
using System.Text.Json;
using VmState.Integration.Harness;

namespace VmState.Integration;

/// <summary>
/// The C ABI as its users reach it: libvmstate.so built by eng/native.sh, the Python module in python/ (its unittest
/// suite, python/tests, run with python3) and a C program compiled against include/vmstate.h, both against a stream of
/// the fixture guest and the guest itself while it runs. What they read is checked against the guest's own ground
/// truth and against the CLI's `ps --json` of the same stream.
/// </summary>
[Collection(ScriptCollection.Name)]
public sealed class NativeAbiTests(ScriptGuest fixture, NativeLibraryBuild build) : IClassFixture<NativeLibraryBuild>
{
    private static readonly TimeSpan s_runTimeout = TimeSpan.FromMinutes(5);

    [Fact]
    public void ThePythonModuleListsTheGuestsProcessesReadsItsMemoryAndReportsTypedErrors()
    {
        string library = build.LibraryPath;
        string truth = WriteTruth();
        string psJson = WriteCliPsJson();
        var environment = new Dictionary<string, string>
        {
            ["VMSTATE_LIB"] = library,
            ["VMSTATE_TEST_SNAPSHOT"] = fixture.StreamPath,
            ["VMSTATE_TEST_TRUTH"] = truth,
            ["VMSTATE_TEST_PS_JSON"] = psJson,
            ["VMSTATE_TEST_QMP"] = fixture.Guest.ToolQmpPath,
            ["PYTHONDONTWRITEBYTECODE"] = "1",
        };
        HostCommand.Result run = HostCommand.Run("python3", ["-m", "unittest", "discover", "-s", "tests", "-v"], Path.Combine(RepoPaths.Root, "python"), s_runTimeout, environment);
        Assert.True(run.ExitCode == 0, run.ToString());

        // unittest reports on stderr. Every test ran and passed: none skipped (each needed variable was given).
        string[] lines = run.Stderr.Split('\n', StringSplitOptions.TrimEntries);
        Assert.True(lines.Contains("OK"), run.ToString());
        string ran = Assert.Single(lines, l => l.StartsWith("Ran ", StringComparison.Ordinal));
        int count = int.Parse(ran.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(count, lines.Count(l => l.EndsWith(" ... ok", StringComparison.Ordinal)));
        foreach (string test in new[]
        {
            "test_processes_are_the_ones_the_guest_printed",
            "test_the_json_is_what_vmstate_ps_json_prints",
            "test_the_kernel_banner_through_the_kernels_page_tables_and_physically",
            "test_the_marker_through_its_own_page_tables",
            "test_a_missing_file_is_an_io_error",
            "test_attach_paused_lists_the_marker_and_close_resumes_the_guest",
            "test_a_process_that_exits_without_closing_resumes_the_guest",
        })
        {
            Assert.Contains(lines, l => l.StartsWith(test + " ", StringComparison.Ordinal) && l.EndsWith(" ... ok", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void ACProgramPrintsTheBannerAndTheJsonTheCliPrints()
    {
        string library = build.LibraryPath;
        string libDir = Path.GetDirectoryName(library)!;
        string program = Path.Combine(build.WorkDir, "vmstate_ps");
        HostCommand.Result compile = HostCommand.Run("cc",
            ["-std=c11", "-Wall", "-Wextra", "-Werror", "-I", "include", "tests/native/vmstate_ps.c", "-L", libDir, "-lvmstate", $"-Wl,-rpath,{libDir}", "-o", program],
            RepoPaths.Root, s_runTimeout);
        Assert.True(compile.ExitCode == 0, compile.ToString());

        HostCommand.Result run = HostCommand.Run(program, [fixture.StreamPath], build.WorkDir, s_runTimeout);
        Assert.True(run.ExitCode == 0, run.ToString());
        string version = typeof(Vm).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];
        string[] lines = run.Stdout.Split('\n');
        Assert.Equal($"libvmstate {version}", lines[0]);
        Assert.Equal($"banner {fixture.Truth.Lines.First(l => l.Key == "banner").Text}", lines[1]);

        // "json N bytes", the document, then the two error lines.
        int length = int.Parse(lines[2].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        int start = run.Stdout.IndexOf('\n', run.Stdout.IndexOf("\njson ", StringComparison.Ordinal) + 1) + 1;
        Assert.Equal(File.ReadAllText(WriteCliPsJson()), run.Stdout.Substring(start, length));
        string[] tail = run.Stdout[(start + length)..].Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("null-pointer status 1: json is NULL", tail[0]);
        Assert.StartsWith("closed-handle status 1: ", tail[1], StringComparison.Ordinal);
        Assert.Contains("not an open vmstate handle", tail[1], StringComparison.Ordinal);

        HostCommand.Result missing = HostCommand.Run(program, [Path.Combine(build.WorkDir, "no-such.mig")], build.WorkDir, s_runTimeout);
        Assert.True(missing.ExitCode == 1, missing.ToString());
        Assert.StartsWith("vmstate_open: status 5: ", missing.Stderr, StringComparison.Ordinal);
    }

    /// <summary>The guest's ground truth, as the JSON file python/tests/test_vmstate.py reads.</summary>
    private string WriteTruth()
    {
        GroundTruth t = fixture.Truth;
        GroundTruth.MarkerInfo marker = t.Marker!;
        string path = Path.Combine(build.WorkDir, "truth.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            kernel = t.KernelVersion,
            banner = t.Lines.First(l => l.Key == "banner").Text,
            processes = t.Processes.Select(p => new { pid = p.Pid, ppid = p.Ppid, uid = p.Uid, comm = p.Comm }),
            marker = new { pid = marker.Pid, value = marker.Value, addr = marker.VirtualAddress, paddr = marker.PhysicalAddress },
        }));
        return path;
    }

    /// <summary>What <c>vmstate ps --json</c> prints for the stream.</summary>
    private string WriteCliPsJson()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["ps", "--json", fixture.StreamPath]);
        Assert.True(code == 0, stderr);
        string path = Path.Combine(build.WorkDir, "ps.json");
        File.WriteAllText(path, stdout);
        return path;
    }
}
