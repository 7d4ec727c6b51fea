using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using VmState.Editing;
using VmState.History;
using VmState.IO;
using VmState.Memory;
using VmState.Mount;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate mount SOURCE MOUNTPOINT</c>: a snapshot, a running VM (<c>--qmp</c>) or a history store as a filesystem
/// (FUSE) until Ctrl-C, SIGTERM or <c>vmstate umount MOUNTPOINT</c>, read-only unless <c>--rw</c>; and
/// <c>vmstate umount</c>.
/// </summary>
internal static class MountCommand
{
    public static Command Create()
    {
        var command = new Command("mount", "Serve a snapshot, a running VM (--qmp) or a history store as a filesystem (machine/physmem, machine/core.elf, linux/ps, proc/PID/mem, ...) until Ctrl-C or vmstate umount");
        var input = new KernelInput(command, "MOUNTPOINT", "the directory to mount on");
        var rw = new Option<bool>("--rw") { Description = "let machine/physmem and proc/PID/mem be written: into the running VM (--qmp), or into a new snapshot (-o) saved on unmount" };
        var output = new Option<string?>("--output", "-o") { Description = "with --rw on a snapshot: the new snapshot the writes are saved into on unmount (never the input)" };
        var foreground = new Option<bool>("--foreground", "-f") { Description = "stay in the foreground until unmounted (Ctrl-C unmounts); without it, vmstate returns once the mount is ready and serves it in the background until `vmstate umount`" };
        var refresh = new Option<double>("--refresh") { Description = "with --qmp: seconds a listing or a rendered file is kept before it is read from the guest again", DefaultValueFactory = _ => VmMountOptions.DefaultLiveRefresh.TotalSeconds };
        command.Options.Add(rw);
        command.Options.Add(output);
        command.Options.Add(refresh);
        command.Options.Add(foreground);
        command.SetAction(r => KernelInput.Run(() =>
        {
            if (!r.GetValue(foreground))
            {
                return Background.Start();
            }

            string mountPoint = input.Trailing(r);
            bool live = input.IsLive(r);
            bool writable = r.GetValue(rw);
            string? outPath = r.GetValue(output);
            string? source = input.InputPath(r);
            if (live && input.Pauses(r))
            {
                Console.Error.WriteLine("vmstate mount: --pause is not for a mount: a mounted running VM keeps running (each file is read at its open)");
                return 2;
            }

            if (outPath is not null && (!writable || live))
            {
                Console.Error.WriteLine(live
                    ? "vmstate mount: -o is for snapshots: writes to a running VM (--rw) reach the guest at once"
                    : "vmstate mount: -o saves the writes of a --rw mount; add --rw");
                return 2;
            }

            if (writable && !live && outPath is null)
            {
                Console.Error.WriteLine("vmstate mount: --rw on a snapshot needs -o NEW: the writes are saved there on unmount (the input is never changed)");
                return 2;
            }

            if (r.GetValue(refresh) is double seconds && (!(seconds > 0) || seconds > 86400))
            {
                Console.Error.WriteLine("vmstate mount: --refresh takes seconds between 0 and 86400");
                return 2;
            }

            if (source is not null && Directory.Exists(source))
            {
                if (writable)
                {
                    Console.Error.WriteLine("vmstate mount: a history store is mounted read-only");
                    return 2;
                }

                using HistoryStore store = HistoryStore.Open(source);
                using var history = new HistoryMountTree(store, c => input.OpenPath(r, $"{source}@{c.Number.ToString(CultureInfo.InvariantCulture)}"));
                return Serve(history.Root, mountPoint, writable: false, $"history store {source} ({store.Captures.Count} captures)", "read-only", () => { });
            }

            using Vm vm = input.Open(r);
            var options = new VmMountOptions();
            SnapshotEditor? editor = null;
            SnapshotWriter.Target? target = null;
            if (live)
            {
                options = options with
                {
                    Refresh = TimeSpan.FromSeconds(r.GetValue(refresh)),
                    CurrentState = () => vm.Live!.ToMachineStateAsync().GetAwaiter().GetResult(),
                };
            }

            if (writable && live)
            {
                if (!vm.TryGet(out IWritableMemory? memory))
                {
                    Console.Error.WriteLine($"vmstate mount: {TerminalText.Escape(vm.Origin.Path)}: its memory cannot be written here (read through {TerminalText.Escape(vm.Live!.MemoryPath)}); --rw needs QEMU's process memory or a shared memory backend");
                    return 1;
                }

                options = options with { WritableMemory = memory };
            }
            else if (writable)
            {
                target = new SnapshotWriter.Target(outPath!);
                SnapshotWriter.Validate(vm.Machine, target);
                editor = new SnapshotEditor(vm.Machine);
                options = options with { WritableMemory = editor.Memory };
            }

            string how = !writable ? "read-only" : live ? "read-write: writes reach the running guest" : $"read-write: writes are saved to {TerminalText.Escape(outPath!)} on unmount";
            if (live)
            {
                how += $"; refreshed every {r.GetValue(refresh).ToString("0.###", CultureInfo.InvariantCulture)} s, the guest keeps running";
            }

            return Serve(VmMountTree.Build(vm, options), mountPoint, writable, TerminalText.Escape(vm.Origin.Path), how, () =>
            {
                if (editor is null)
                {
                    return;
                }

                if (editor.Stream.EditedPages == 0)
                {
                    Console.Error.WriteLine($"no writes: {TerminalText.Escape(outPath!)} not written");
                    return;
                }

                Console.Error.WriteLine($"{editor.Stream.EditedPages} edited pages: {TerminalText.Escape(SnapshotWriter.Save(editor, vm.Machine, target!))}");
            });
        }));
        return command;
    }

    /// <summary>Mounts <paramref name="root"/> and serves it until Ctrl-C, SIGTERM, SIGHUP or an unmount; then runs <paramref name="after"/>.</summary>
    private static int Serve(MountDirectory root, string mountPoint, bool writable, string what, string how, Action after)
    {
        if (Background.IsChild)
        {
            ProcessSession.Detach();
        }

        using var stop = new CancellationTokenSource();
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using PosixSignalRegistration sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, Stop);
        FuseMount mount;
        try
        {
            mount = FuseMount.Start(root, mountPoint, writable);
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"vmstate mount: {e.Message}");
            return 1;
        }

        using (mount)
        {
            if (Background.IsChild)
            {
                // The starting vmstate relays this line and returns; from here on no one reads our output.
                Console.Error.WriteLine($"mounted {what} at {TerminalText.Escape(mount.MountPoint)} ({how}); in the background (process {Environment.ProcessId}) until `vmstate umount {TerminalText.Escape(mount.MountPoint)}`");
                Console.Error.Flush();
                Console.SetError(TextWriter.Null);
                Console.SetOut(TextWriter.Null);
            }
            else
            {
                Console.Error.WriteLine($"mounted {what} at {TerminalText.Escape(mount.MountPoint)} ({how}); Ctrl-C or `vmstate umount {TerminalText.Escape(mount.MountPoint)}` unmounts");
            }

            try
            {
                mount.Ended.Wait(stop.Token);
            }
            catch (OperationCanceledException)
            {
                // Ctrl-C, SIGTERM or SIGHUP: the normal end of a mount; unmounted by the dispose below.
            }
        }

        after();
        return 0;

        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }
    }

    /// <summary>
    /// The default (no <c>--foreground</c>): the same command runs again as a child with <c>--foreground</c>, in a
    /// session of its own; its messages are relayed until it says "mounted" (then this process returns 0 and the
    /// child serves the mount) or exits (its error, and its exit code, are this process's).
    /// </summary>
    private static class Background
    {
        private const string ChildVariable = "VMSTATE_MOUNT_BACKGROUND";

        public static bool IsChild => Environment.GetEnvironmentVariable(ChildVariable) == "1";

        public static int Start()
        {
            string host = Environment.ProcessPath ?? throw new InvalidOperationException("the path of this program is not known");
            var psi = new System.Diagnostics.ProcessStartInfo(host)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };

            // Under the dotnet host (a build, not the installed executable), the program is its first argument.
            if (Path.GetFileNameWithoutExtension(host) == "dotnet")
            {
                psi.ArgumentList.Add(Environment.GetCommandLineArgs()[0]);
            }

            // The same command line (the arguments after the program), and --foreground.
            foreach (string a in Environment.GetCommandLineArgs().AsSpan(1))
            {
                psi.ArgumentList.Add(a);
            }

            psi.ArgumentList.Add("--foreground");
            psi.Environment[ChildVariable] = "1";
            using System.Diagnostics.Process child = System.Diagnostics.Process.Start(psi) ?? throw new InvalidOperationException($"{host} did not start");
            child.StandardInput.Close();
            Task<string> output = child.StandardOutput.ReadToEndAsync();
            while (child.StandardError.ReadLine() is string line)
            {
                Console.Error.WriteLine(line);
                if (line.StartsWith("mounted ", StringComparison.Ordinal))
                {
                    return 0;
                }
            }

            child.WaitForExit();
            Console.Out.Write(output.Result);
            return child.ExitCode == 0 ? 1 : child.ExitCode;
        }
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
