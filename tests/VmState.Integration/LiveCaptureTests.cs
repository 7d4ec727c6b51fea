using System.Text.Json;
using VmState.Integration.Harness;
using VmState.Linux;
using VmState.Live;
using VmState.Machine;

namespace VmState.Integration;

/// <summary>
/// Live capture: a running guest's state streamed into this process with QEMU's background snapshot (no file in
/// between), opened as a snapshot; the guest keeps running, and a consumer that fails or is cancelled leaves no
/// migration active, background-snapshot off and the guest running.
/// </summary>
public sealed class LiveCaptureTests(FrontDoorGuest fixture) : IClassFixture<FrontDoorGuest>
{
    private QemuGuest Guest => fixture.Guest;

    private async Task AssertRunningWithNoMigrationAsync()
    {
        Assert.Equal("running", await Guest.Qmp.QueryStatusAsync());
        JsonElement migration = await Guest.Qmp.ExecuteAsync("query-migrate");
        Assert.False(QemuMonitor.IsMigrationActive(migration), migration.GetRawText());
        JsonElement capabilities = await Guest.Qmp.ExecuteAsync("query-migrate-capabilities");
        Assert.Contains(capabilities.EnumerateArray(), c => c.GetProperty("capability").GetString() == "background-snapshot" && !c.GetProperty("state").GetBoolean());
        int from = Guest.SerialLineCount;
        await Guest.WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-TICK ", StringComparison.Ordinal), TimeSpan.FromSeconds(60), from);
    }

    [Fact]
    public async Task ACaptureThroughTheFrontDoorOpensAsASnapshotWhosePsIsTheLiveGuests()
    {
        string file = Path.Combine(Guest.WorkDir, "captured.mig");
        await using Vm vm = await Vm.AttachAsync(Guest.ToolQmpPath);
        Assert.True(vm.TryGet(out ISnapshotting? snapshots));
        bool sawSeek = true;
        SaveResult result = await snapshots.CaptureAsync(async (stream, ct) =>
        {
            sawSeek = stream.CanSeek || stream.CanWrite;
            await using FileStream output = File.Create(file);
            await stream.CopyToAsync(output, ct);
        });

        Assert.False(sawSeek);
        Assert.Equal(SaveMode.BackgroundSnapshot, result.Mode);
        Assert.Null(result.FallbackReason);
        Assert.Equal(new FileInfo(file).Length, result.Bytes);
        Assert.True(result.Bytes > 16 << 20, $"{result.Bytes} bytes");
        Assert.NotNull(result.GuestPause);
        Assert.InRange(result.GuestPause.Value.TotalMilliseconds, 0, 1000);
        Assert.NotNull(result.DowntimeMilliseconds);
        await AssertRunningWithNoMigrationAsync();

        IReadOnlyList<LinuxProcess> live;
        await using (await vm.PauseAsync())
        {
            live = vm.Linux.Processes();
        }

        using Vm captured = Vm.Open(file);
        Assert.Equal(MachineOriginKind.MigrationStream, captured.Origin.Kind);
        Assert.Equal(
            live.Select(p => (p.Pid, p.Tgid, p.Ppid, p.Comm, p.Cmdline)),
            captured.Linux.Processes().Select(p => (p.Pid, p.Tgid, p.Ppid, p.Comm, p.Cmdline)));
        GroundTruth.MarkerInfo marker = Guest.Truth.Marker!;
        byte[] b = new byte[marker.Value.Length];
        captured.Machine.Memory.Read(marker.PhysicalAddress, b);
        Assert.Equal(marker.Value, System.Text.Encoding.ASCII.GetString(b));
        Assert.Equal("running", await Guest.Qmp.QueryStatusAsync());
    }

    [Fact]
    public async Task AConsumerThatThrowsLeavesTheGuestRunningAndNoMigrationActive()
    {
        await using LiveMachine live = await LiveMachine.AttachAsync(Guest.ToolQmpPath);
        long read = 0;
        var thrown = await Assert.ThrowsAsync<InvalidDataException>(() => live.CaptureAsync(async (stream, ct) =>
        {
            byte[] buffer = new byte[1 << 20];
            while (read < 4 << 20)
            {
                read += await stream.ReadAsync(buffer, ct);
            }

            throw new InvalidDataException("the consumer failed");
        }));
        Assert.Equal("the consumer failed", thrown.Message);
        Assert.True(read >= 4 << 20);
        await AssertRunningWithNoMigrationAsync();

        // Cancelled half-way: the same clean state.
        using var cancel = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => live.CaptureAsync(async (stream, ct) =>
        {
            byte[] buffer = new byte[1 << 20];
            Assert.True(await stream.ReadAsync(buffer, ct) > 0);
            await cancel.CancelAsync();
            while (await stream.ReadAsync(buffer, ct) > 0)
            {
            }
        }, cancel.Token));
        await AssertRunningWithNoMigrationAsync();

        // A consumer that reads nothing: the rest is drained, and the capture after the failures completes.
        SaveResult next = await live.CaptureAsync((_, _) => Task.CompletedTask);
        Assert.Equal(SaveMode.BackgroundSnapshot, next.Mode);
        Assert.True(next.Bytes > 16 << 20);
        await AssertRunningWithNoMigrationAsync();
    }

    [Fact]
    public async Task QemuExitingDuringACaptureIsReportedAsTheVmGone()
    {
        await using QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions());
        await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
        await using LiveMachine live = await LiveMachine.AttachAsync(guest.ToolQmpPath);
        Exception e = await Assert.ThrowsAnyAsync<Exception>(() => live.CaptureAsync(async (stream, ct) =>
        {
            byte[] buffer = new byte[1 << 20];
            Assert.True(await stream.ReadAsync(buffer, ct) > 0);
            await guest.QuitAsync();
            while (await stream.ReadAsync(buffer, ct) > 0)
            {
            }
        }));
        Assert.True(e is LiveVmGoneException or IOException, e.ToString());
    }
}
