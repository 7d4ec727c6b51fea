using VmState.Integration.Harness;
using VmState.Linux;
using VmState.Live;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Integration;

/// <summary>One running fixture guest shared by the tests of <see cref="VmFrontDoorTests"/>.</summary>
public sealed class FrontDoorGuest : IAsyncLifetime
{
    public QemuGuest Guest { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Guest = await QemuGuest.StartAsync(new QemuGuestOptions());
        await Guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    public async Task DisposeAsync() => await Guest.DisposeAsync();
}

/// <summary>The library's front door, <see cref="Vm"/>, on a running guest and on a migration stream of it.</summary>
public sealed class VmFrontDoorTests(FrontDoorGuest fixture) : IClassFixture<FrontDoorGuest>
{
    private QemuGuest Guest => fixture.Guest;

    private Task<string> StatusAsync() => Guest.Qmp.QueryStatusAsync();

    /// <summary>The example of docs/library.md, compiled here: attach, pause, list the processes.</summary>
    private static async Task ListProcessesAsync(string qmpSocket, TextWriter output)
    {
        await using Vm vm = await Vm.AttachAsync(qmpSocket);
        await using (await vm.PauseAsync())
        {
            // Inside the scope the guest is stopped: the task list cannot change under the walk.
            foreach (LinuxProcess p in vm.Linux.Processes())
            {
                output.WriteLine($"{p.Pid,6} {p.Ppid,6} {p.Comm}");
            }
        }
    }

    [Fact]
    public async Task APauseScopeStopsTheGuestAndItsDisposalRunsItAgain()
    {
        Assert.Equal("running", await StatusAsync());
        await using Vm vm = await Vm.AttachAsync(Guest.ToolQmpPath);
        Assert.True(vm.IsLive);
        Assert.NotNull(vm.Live);
        Assert.Equal((MachineOriginKind.LiveQemu, "qmp:" + Guest.ToolQmpPath), (vm.Origin.Kind, vm.Origin.Path));
        Assert.NotEmpty(vm.Machine.Cpus);

        await using (VmPause pause = await vm.PauseAsync())
        {
            Assert.True(pause.StoppedGuest);
            Assert.Equal("paused", await StatusAsync());
        }

        Assert.Equal("running", await StatusAsync());

        // The synchronous disposal does the same.
        using (await vm.PauseAsync())
        {
            Assert.Equal("paused", await StatusAsync());
        }

        Assert.Equal("running", await StatusAsync());
    }

    [Fact]
    public async Task AnExceptionInsideThePauseScopeStillResumesTheGuest()
    {
        await using Vm vm = await Vm.AttachAsync(Guest.ToolQmpPath);
        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            await using (await vm.PauseAsync())
            {
                Assert.Equal("paused", await StatusAsync());
                throw new InvalidOperationException("failed while paused");
            }
        });
        Assert.Equal("failed while paused", thrown.Message);
        Assert.Equal("running", await StatusAsync());
    }

    [Fact]
    public async Task AGuestThatWasAlreadyPausedStaysPaused()
    {
        await Guest.PauseAsync();
        try
        {
            await using Vm vm = await Vm.AttachAsync(Guest.ToolQmpPath);
            await using (VmPause pause = await vm.PauseAsync())
            {
                Assert.False(pause.StoppedGuest);
            }

            Assert.Equal("paused", await StatusAsync());
        }
        finally
        {
            await Guest.ResumeAsync();
        }

        Assert.Equal("running", await StatusAsync());
    }

    [Fact]
    public async Task DisposingTheVmResumesThePausesItHolds()
    {
        // A scope the caller never disposed.
        Vm vm = await Vm.AttachAsync(Guest.ToolQmpPath);
        VmPause forgotten = await vm.PauseAsync();
        Assert.Equal("paused", await StatusAsync());
        await vm.DisposeAsync();
        Assert.True(forgotten.IsResumed);
        Assert.Equal("running", await StatusAsync());

        // The pause taken when attaching, released by a synchronous Dispose.
        Vm paused = await Vm.AttachAsync(Guest.ToolQmpPath, new VmAttachOptions { Pause = true });
        Assert.Equal("paused", await StatusAsync());
        paused.Dispose();
        Assert.Equal("running", await StatusAsync());
    }

    [Fact]
    public async Task LiveProcessesHoldTheMarkerAndEqualThoseOfAMigrationStreamOfTheSameMoment()
    {
        GroundTruth.MarkerInfo marker = Guest.Truth.Marker!;
        string file = Path.Combine(Guest.WorkDir, "front-door.mig");
        IReadOnlyList<LinuxProcess> live;
        await using (Vm vm = await Vm.AttachAsync(Guest.ToolQmpPath))
        {
            await using (await vm.PauseAsync())
            {
                live = vm.Linux.Processes();
                await Guest.MigrateToFileAsync(file);
            }
        }

        // migrate leaves the source in postmigrate; the scope's cont ran it again.
        Assert.Equal("running", await StatusAsync());
        LinuxProcess markerProcess = Assert.Single(live, p => p.Pid == marker.Pid);
        Assert.Contains(Guest.Truth.Processes, p => p.Pid == marker.Pid && p.Comm == markerProcess.Comm);

        using Vm snapshot = Vm.Open(file);
        Assert.Equal(MachineOriginKind.MigrationStream, snapshot.Origin.Kind);
        Assert.Equal(
            live.Select(p => (p.Pid, p.Tgid, p.Ppid, p.Comm, p.State, p.Cmdline)),
            snapshot.Linux.Processes().Select(p => (p.Pid, p.Tgid, p.Ppid, p.Comm, p.State, p.Cmdline)));
    }

    [Fact]
    public async Task TheLibraryExampleListsTheMarkerProcess()
    {
        var output = new StringWriter();
        await ListProcessesAsync(Guest.ToolQmpPath, output);
        string pid = Guest.Truth.Marker!.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Contains(output.ToString().Split('\n'), l => l.TrimStart().StartsWith(pid + " ", StringComparison.Ordinal));
        Assert.Equal("running", await StatusAsync());
    }

    [Fact]
    public async Task ARunningVmHasLiveControlSnapshottingAndWritableMemoryButNoDeviceState()
    {
        await using Vm vm = await Vm.AttachAsync(Guest.ToolQmpPath);
        Assert.True(vm.Can<IPhysicalMemory>());
        Assert.True(vm.Can<IVcpuRegisters>());
        Assert.False(vm.Can<IDeviceStates>());
        Assert.False(vm.Can<ISparseMemory>());

        // Live control: the run state follows a pause scope and an explicit resume.
        Assert.True(vm.TryGet(out ILiveControl? control));
        Assert.Equal(QemuRunState.Running, await control.GetRunStateAsync());
        await using (VmPause pause = await control.PauseAsync())
        {
            Assert.True(pause.StoppedGuest);
            Assert.Equal(QemuRunState.Paused, await control.GetRunStateAsync());
            await control.ResumeAsync();
            Assert.Equal(QemuRunState.Running, await control.GetRunStateAsync());
        }

        Assert.Equal("running", await StatusAsync());

        // Writable memory: a write reaches the guest, which prints the marker's new value.
        Assert.True(vm.TryGet(out IWritableMemory? ram));
        GroundTruth.MarkerInfo marker = Guest.Truth.Marker!;
        byte[] value = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(value, 0x1122334455667788);
        Assert.Equal(8, ram.Write(marker.GValuePhysicalAddress, value));
        await Guest.WaitForSerialLineAsync(l => l.EndsWith("value=0x1122334455667788", StringComparison.Ordinal), TimeSpan.FromSeconds(30), Guest.SerialLineCount);

        // Snapshotting: the saved file opens as a snapshot with the capabilities of one.
        Assert.True(vm.TryGet(out ISnapshotting? snapshots));
        string file = Path.Combine(Guest.WorkDir, "capabilities.mig");
        SaveResult saved = await snapshots.SaveAsync(file);
        Assert.Equal(new FileInfo(file).Length, saved.Bytes);
        Assert.Equal("running", await StatusAsync());
        using Vm snapshot = Vm.Open(file);
        Assert.Equal(MachineOriginKind.MigrationStream, snapshot.Origin.Kind);
        Assert.True(snapshot.Can<IDeviceStates>());
        Assert.True(snapshot.Can<ISparseMemory>());
        Assert.False(snapshot.Can<ILiveControl>());
        Assert.False(snapshot.Can<ISnapshotting>());
        Assert.False(snapshot.Can<IWritableMemory>());
        Assert.Equal(vm.Machine.Cpus.Count, snapshot.Machine.Cpus.Count);
    }
}
