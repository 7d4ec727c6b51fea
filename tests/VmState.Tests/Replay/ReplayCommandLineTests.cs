using VmState.Live;
using VmState.Replay;

namespace VmState.Tests.Replay;

public sealed class ReplayCommandLineTests
{
    private static readonly ReplayRunPaths Paths = new("/r/replay.bin", "/r/work", "/s/control.sock", "/s/qmp.sock");

    private static QemuArguments Q(params string[] args) => QemuArguments.Parse(["qemu-system-x86_64", .. args]);

    [Theory]
    [InlineData("-smp", "2", "cannot record -smp 2")]
    [InlineData("-smp", "sockets=2", "cannot record -smp sockets=2")]
    [InlineData("-accel", "kvm", "cannot record -accel kvm")]
    [InlineData("-machine", "pc,accel=kvm", "cannot record -machine accel=kvm")]
    [InlineData("-net", "user", "cannot record -net user")]
    [InlineData("-nic", "user", "cannot record -nic user")]
    [InlineData("-device", "vfio-pci,host=01:00.0", "cannot record -device vfio-pci")]
    [InlineData("-object", "rng-random,id=r,filename=/dev/urandom", "cannot record -object rng-random")]
    [InlineData("-serial", "stdio", "cannot record -serial stdio")]
    [InlineData("-drive", "file=a.img,if=scsi", "cannot record -drive if=scsi")]
    [InlineData("-icount", "shift=3,rr=record,rrfile=x", "cannot record -icount")]
    [InlineData("-netdev", "user", "the netdev needs an id=")]
    public void WhatReplayCannotReproduceIsRefusedWithAReason(string option, string value, string message)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => ReplayCommandLine.Check(Q("-m", "256", option, value)));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-enable-kvm")]
    [InlineData("-snapshot")]
    [InlineData("-nographic")]
    [InlineData("-daemonize")]
    public void FlagsReplayCannotTakeAreRefused(string flag) =>
        Assert.Throws<ArgumentException>(() => ReplayCommandLine.Check(Q("-m", "256", flag)));

    [Fact]
    public void ARecordingAddsIcountFiltersTheSnapshotImageAndSockets()
    {
        QemuArguments user = Q("-m", "256", "-netdev", "user,id=n0", "-device", "e1000,netdev=n0", "-serial", "file:/tmp/s.log", "-qmp", "unix:/tmp/mine.sock,server=on,wait=off");
        Assert.Empty(ReplayCommandLine.Check(user));
        string line = string.Join(' ', ReplayCommandLine.Build(user, ReplayMode.Record, Paths, []).ToArgv());
        Assert.Equal(
            "qemu-system-x86_64 -m 256 -netdev user,id=n0 -object filter-replay,id=rr-filter-n0,netdev=n0 -device e1000,netdev=n0 -serial file:/tmp/s.log " +
            "-qmp unix:/tmp/mine.sock,server=on,wait=off -icount shift=auto,rr=record,rrfile=/r/replay.bin -drive file=/r/work/snapshots.qcow2,if=none,id=rr-snapshots,format=qcow2 " +
            "-no-shutdown -qmp unix:/s/control.sock,server=on,wait=off -qmp unix:/s/qmp.sock,server=on,wait=off",
            line);
    }

    [Fact]
    public void AReplayHasTheSameDevicesItsOwnConsoleFilesAndNoneOfTheUsersMonitors()
    {
        QemuArguments user = Q("-m", "256", "-icount", "shift=4", "-serial", "file:/tmp/s.log", "-qmp", "unix:/tmp/mine.sock,server=on,wait=off", "-gdb", "tcp::1234");
        string line = string.Join(' ', ReplayCommandLine.Build(user, ReplayMode.Replay, Paths with { GdbPort = 4321, StartPaused = true }, []).ToArgv());
        Assert.Equal(
            "qemu-system-x86_64 -m 256 -serial file:/r/work/serial0.log -net none -icount shift=4,rr=replay,rrfile=/r/replay.bin " +
            "-drive file=/r/work/snapshots.qcow2,if=none,id=rr-snapshots,format=qcow2 -no-shutdown -qmp unix:/s/control.sock,server=on,wait=off " +
            "-qmp unix:/s/qmp.sock,server=on,wait=off -gdb tcp:127.0.0.1:4321 -S",
            line);
    }

    [Fact]
    public void AReplayFromACheckpointNamesItAsTheStartSnapshotAndARecordingNever()
    {
        QemuArguments user = Q("-m", "256");
        ReplayRunPaths paths = Paths with { StartSnapshot = "rr-ck-400" };
        Assert.Contains("-icount shift=auto,rr=replay,rrfile=/r/replay.bin,rrsnapshot=rr-ck-400 ", string.Join(' ', ReplayCommandLine.Build(user, ReplayMode.Replay, paths, []).ToArgv()), StringComparison.Ordinal);
        Assert.DoesNotContain("rrsnapshot", string.Join(' ', ReplayCommandLine.Build(user, ReplayMode.Record, paths, []).ToArgv()), StringComparison.Ordinal);
    }

    [Fact]
    public void DisksGoBehindBlkreplayOnTheRunsOverlayAndKeepTheirPlaceOnTheController()
    {
        QemuArguments user = Q("-hda", "/img/a.qcow2", "-drive", "file=/img/b.raw,format=raw,if=virtio", "-drive", "file=/img/c.iso,media=cdrom", "-drive", "file=/img/d.img,format=raw,if=none,id=mine");
        IReadOnlyList<(string File, string? Format, bool ReadOnly)> found = ReplayCommandLine.Check(user);
        Assert.Equal([("/img/a.qcow2", null, false), ("/img/b.raw", "raw", false), ("/img/c.iso", null, true), ("/img/d.img", "raw", false)], found);
        ReplayDrive[] drives = [.. found.Select((d, i) => new ReplayDrive(i, d.File, d.Format ?? (d.ReadOnly ? "raw" : "qcow2"), d.ReadOnly, 1, DateTime.UnixEpoch))];
        string[] argv = [.. ReplayCommandLine.Build(user, ReplayMode.Record, Paths, drives).ToArgv()];
        string line = string.Join(' ', argv);
        Assert.Contains("-drive file=/r/work/drive0.qcow2,format=qcow2,if=none,id=rr-direct0,node-name=rr-overlay0 -drive driver=blkreplay,if=none,image=rr-direct0,id=rr-drive0 -device ide-hd,drive=rr-drive0,bus=ide.0,unit=0", line, StringComparison.Ordinal);
        Assert.Contains("-drive file=/r/work/drive1.qcow2,format=qcow2,if=none,id=rr-direct1,node-name=rr-overlay1 -drive driver=blkreplay,if=none,image=rr-direct1,id=rr-drive1 -device virtio-blk-pci,drive=rr-drive1", line, StringComparison.Ordinal);
        Assert.Contains("-drive file=/img/c.iso,format=raw,readonly=on,if=none,id=rr-direct2 -drive driver=blkreplay,if=none,image=rr-direct2,id=rr-drive2,readonly=on -device ide-cd,drive=rr-drive2,bus=ide.0,unit=1", line, StringComparison.Ordinal);
        Assert.Contains("-drive file=/r/work/drive3.qcow2,format=qcow2,if=none,id=rr-direct3,node-name=rr-overlay3 -drive driver=blkreplay,if=none,image=rr-direct3,id=mine", line, StringComparison.Ordinal);
        Assert.DoesNotContain("/img/a.qcow2", line, StringComparison.Ordinal);
        // A checkpoint (snapshot-save) names the overlays' nodes; a read-only disk has none, and the user's own node name goes.
        Assert.DoesNotContain("rr-overlay2", line, StringComparison.Ordinal);
        Assert.Equal("rr-overlay3", ReplayCommandLine.OverlayNode(drives[3]));
    }

    [Fact]
    public void TheUsersNodeNameOfADiskGivesWayToTheOverlays()
    {
        QemuArguments user = Q("-drive", "file=/img/a.qcow2,if=virtio,node-name=mine");
        ReplayDrive[] drives = [new ReplayDrive(0, "/img/a.qcow2", "qcow2", false, 1, DateTime.UnixEpoch)];
        string line = string.Join(' ', ReplayCommandLine.Build(user, ReplayMode.Replay, Paths, drives).ToArgv());
        Assert.Contains("-drive file=/r/work/drive0.qcow2,format=qcow2,if=none,id=rr-direct0,node-name=rr-overlay0 ", line, StringComparison.Ordinal);
        Assert.DoesNotContain("node-name=mine", line, StringComparison.Ordinal);
    }
}
