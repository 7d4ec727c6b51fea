using System.Globalization;
using System.Text;
using VmState.Integration.Harness;
using VmState.Live;

namespace VmState.Integration;

/// <summary>
/// The file-based programs of examples/, run as their README says (<c>dotnet run examples/NAME.cs -- ARGS</c> from the
/// repository root) against the fixture guest, their output checked against what the guest printed about itself.
/// The first run of each builds it (seconds); .NET caches the build until the file or the library changes.
/// </summary>
[Collection(ScriptCollection.Name)]
public sealed class ExamplesTests(ScriptGuest fixture)
{
    private static readonly TimeSpan s_runTimeout = TimeSpan.FromMinutes(10);

    private GroundTruth.MarkerInfo Marker => fixture.Truth.Marker!;

    private GroundTruth.Process MarkerProcess => fixture.Truth.Processes.Single(p => p.Pid == Marker.Pid);

    private static HostCommand.Result RunExample(string name, params string[] args) =>
        DotnetCommand.Run(RepoPaths.Root, ["run", $"examples/{name}.cs", "--", .. args], s_runTimeout);

    private static string[] Fields(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void PsListsTheMarkerWithItsParentAndName()
    {
        HostCommand.Result ps = RunExample("ps", fixture.StreamPath);
        Assert.True(ps.ExitCode == 0, ps.ToString());
        string[][] rows = [.. ps.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(Fields)];
        Assert.Contains(rows, r => r.SequenceEqual([Marker.Pid.ToString(CultureInfo.InvariantCulture), MarkerProcess.Ppid.ToString(CultureInfo.InvariantCulture), MarkerProcess.Comm]));
        Assert.Contains(rows, r => r[0] == "1");
    }

    [Fact]
    public void WhoMapsNamesTheMarkerAsTheOwnerOfItsBuffersPage()
    {
        HostCommand.Result who = RunExample("who-maps", fixture.StreamPath, $"0x{Marker.PhysicalAddress:x}");
        Assert.True(who.ExitCode == 0, who.ToString());
        string[][] rows = [.. who.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(Fields)];
        // The buffer is the marker's private heap: only the marker maps it, at the virtual address it printed.
        string[] row = Assert.Single(rows);
        Assert.Equal(Marker.Pid.ToString(CultureInfo.InvariantCulture), row[0]);
        Assert.Equal(MarkerProcess.Comm, row[1]);
        Assert.Equal($"0x{Marker.VirtualAddress:x}", row[2]);
    }

    [Fact]
    public void DiffPsFindsNoDifferenceInOneStreamAndTheRenamedProcessInAnEditedCopy()
    {
        HostCommand.Result same = RunExample("diff-ps", fixture.StreamPath, fixture.StreamPath);
        Assert.True(same.ExitCode == 0, same.ToString());
        Assert.StartsWith("no difference (", same.Stdout, StringComparison.Ordinal);

        // Rename the marker in a copy: overwrite task_struct.comm through the kernel's page tables with vmstate edit.
        ulong commAddress;
        using (Vm vm = Vm.Open(fixture.StreamPath))
        {
            ulong task = vm.Linux.Processes().Single(p => p.Pid == Marker.Pid).TaskAddress;
            commAddress = vm.Linux.Kernel.ObjectAt(task, "struct task_struct").Member("comm").Address;
        }

        const string NewName = "renamed";
        string edited = Path.Combine(fixture.Guest.WorkDir, "renamed.mig");
        string bytes = Convert.ToHexString(Encoding.ASCII.GetBytes(NewName + "\0"));
        (int code, _, string stderr) = VmStateCli.Run(["edit", fixture.StreamPath, "-o", edited, "--write-va", $"0x{commAddress:x}={bytes}"]);
        Assert.True(code == 0, stderr);

        HostCommand.Result diff = RunExample("diff-ps", fixture.StreamPath, edited);
        Assert.True(diff.ExitCode == 1, diff.ToString());
        string[] lines = diff.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string ppid = MarkerProcess.Ppid.ToString(CultureInfo.InvariantCulture);
        Assert.Equal(["~", Marker.Pid.ToString(CultureInfo.InvariantCulture), ppid, MarkerProcess.Comm, "->", ppid, NewName], Fields(lines[0]));
        Assert.StartsWith("1 difference(s) (", lines[1], StringComparison.Ordinal);
        Assert.Equal(2, lines.Length);
    }

    [Fact]
    public async Task WatchVarSeesJiffiesAdvanceOnTheRunningGuest()
    {
        Assert.Equal("running", await fixture.Guest.Qmp.QueryStatusAsync());
        HostCommand.Result watch = RunExample("watch-var", fixture.Guest.ToolQmpPath, "jiffies", "10", "300");
        Assert.True(watch.ExitCode == 0, watch.ToString());
        string[] lines = watch.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("jiffies at 0xffffffff", lines[0], StringComparison.Ordinal);
        // Each later line is "TIME jiffies = VALUE", printed only when the value changed: two lines are two values,
        // and jiffies only grows (the fixture's uptime is far from the 64-bit wrap).
        ulong[] values = [.. lines.Skip(1).Select(l => ulong.Parse(Fields(l)[3], CultureInfo.InvariantCulture))];
        Assert.True(values.Length >= 2, watch.ToString());
        Assert.Equal(values.Order(), values);
        Assert.Equal(values.Length, values.Distinct().Count());
    }
}
