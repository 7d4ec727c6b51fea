using System.CommandLine;
using System.Runtime.InteropServices;
using VmState.Mount;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate mount SNAPSHOT MOUNTPOINT</c>: the snapshot as a read-only filesystem (FUSE) until Ctrl-C, SIGTERM or
/// <c>vmstate umount MOUNTPOINT</c>; and <c>vmstate umount</c>.
/// </summary>
internal static class MountCommand
{
    public static Command Create()
    {
        var command = new Command("mount", "Mount a snapshot as a read-only filesystem (machine/physmem, linux/ps, proc/PID/mem, ...) until Ctrl-C or vmstate umount");
        var input = new KernelInput(command, "MOUNTPOINT", "the directory to mount on");
        command.SetAction(r => KernelInput.Run(() =>
        {
            string mountPoint = input.Trailing(r);
            if (input.IsLive(r))
            {
                Console.Error.WriteLine("vmstate mount: running VMs (--qmp) cannot be mounted yet; mount a snapshot of it (vmstate snapshot --qmp SOCK -o FILE)");
                return 2;
            }

            using Vm vm = input.Open(r);
            using var stop = new CancellationTokenSource();
            using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
            using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            using PosixSignalRegistration sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, Stop);
            FuseMount mount;
            try
            {
                mount = FuseMount.Start(VmMountTree.Build(vm), mountPoint);
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"vmstate mount: {e.Message}");
                return 1;
            }

            using (mount)
            {
                Console.Error.WriteLine($"mounted {TerminalText.Escape(vm.Origin.Path)} at {TerminalText.Escape(mount.MountPoint)} (read-only); Ctrl-C or `vmstate umount {TerminalText.Escape(mount.MountPoint)}` unmounts");
                try
                {
                    mount.Ended.Wait(stop.Token);
                }
                catch (OperationCanceledException)
                {
                    // Ctrl-C, SIGTERM or SIGHUP: the normal end of a mount; unmounted by the dispose below.
                }
            }

            return 0;

            void Stop(PosixSignalContext context)
            {
                context.Cancel = true;
                stop.Cancel();
            }
        }));
        return command;
    }

    public static Command CreateUnmount()
    {
        var mountPoint = new Argument<string>("MOUNTPOINT") { Description = "where a vmstate mount is mounted" };
        var lazy = new Option<bool>("--lazy") { Description = "detach now even when the mount is in use (it disappears once no one uses it)" };
        var command = new Command("umount", "Unmount a vmstate mount (also one whose vmstate process was killed)");
        command.Arguments.Add(mountPoint);
        command.Options.Add(lazy);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(r.GetValue(mountPoint)!));
            string? type = MountPointCheck.FileSystemType(full);
            if (type is null)
            {
                Console.Error.WriteLine($"vmstate umount: {TerminalText.Escape(full)} is not a mount point");
                return 1;
            }

            if (type != MountPointCheck.VmStateType)
            {
                Console.Error.WriteLine($"vmstate umount: {TerminalText.Escape(full)} is a {TerminalText.Escape(type)} mount, not a vmstate mount; not touched");
                return 1;
            }

            if (!MountPointCheck.Unmount(full, r.GetValue(lazy), out string why))
            {
                Console.Error.WriteLine($"vmstate umount: {TerminalText.Escape(full)}: {why}");
                return 1;
            }

            return 0;
        }));
        return command;
    }
}
