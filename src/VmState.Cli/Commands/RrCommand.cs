using System.CommandLine;
using System.Globalization;
using VmState.Replay;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate rr record -o REC -- QEMU ARGS...</c>, <c>vmstate rr replay REC [--to ICOUNT] [--gdb PORT] [--dir DIR]</c>,
/// <c>vmstate rr info REC</c>: QEMU's deterministic record/replay (<see cref="ReplayRecorder"/>, <see cref="ReplaySession"/>).
/// </summary>
internal static class RrCommand
{
    public static Command Create()
    {
        var command = new Command("rr", "Deterministic record/replay of a VM with QEMU's -icount record/replay: record once, replay as often as needed, pause a replay at an instruction count");
        command.Subcommands.Add(Record());
        command.Subcommands.Add(Replay());
        command.Subcommands.Add(Info());
        return command;
    }

    private static Command Record()
    {
        var output = new Option<string>("--output", "-o") { Description = "the recording directory (new, or empty)", Required = true };
        var qemu = new Argument<string[]>("QEMU") { Description = "after --: the QEMU command line to record, e.g. -- qemu-system-x86_64 -m 512 -kernel ...", Arity = ArgumentArity.OneOrMore };
        var command = new Command("record", "Run a QEMU command line under record (one vCPU, TCG; disks behind blkreplay on overlays, NICs with filter-replay) until Ctrl-C or guest power-off; writes the log and a manifest");
        command.Options.Add(output);
        command.Arguments.Add(qemu);
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() =>
        {
            string[] argv = [.. r.GetValue(qemu)!, .. r.UnmatchedTokens];
            ReplayRecording rec = ReplayRecorder.RecordAsync(r.GetValue(output)!, argv, info =>
                Console.Error.WriteLine($"vmstate rr record: QEMU {info.ProcessId} recording into {TerminalText.Escape(info.Directory)}; live commands: --qmp {TerminalText.Escape(info.QmpSocket)}; Ctrl-C to stop"), ct).GetAwaiter().GetResult();
            Console.WriteLine(Describe(rec));
            return 0;
        })));
        return command;
    }

    private static Command Replay()
    {
        var recording = new Argument<string>("REC") { Description = "a recording directory (vmstate rr record)" };
        var to = new Option<string?>("--to") { Description = "pause the replay at this instruction count (decimal, or hex with 0x) and keep it there until Ctrl-C" };
        var gdb = new Option<int?>("--gdb") { Description = "start QEMU's gdbstub on 127.0.0.1:PORT (reverse-stepi and reverse-continue work in a replay)" };
        var dir = new Option<string?>("--dir") { Description = "the replay's work directory: disk overlays and console files (default: a new directory under the temporary directory)" };
        var command = new Command("replay", "Replay a recording: to its end (the console output is the recorded one, byte for byte), or paused at --to ICOUNT with a QMP socket for every live command (ps --qmp, maps, dmesg, read)");
        command.Arguments.Add(recording);
        command.Options.Add(to);
        command.Options.Add(gdb);
        command.Options.Add(dir);
        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() =>
        {
            ReplayRecording rec = ReplayRecording.Open(r.GetValue(recording)!);
            ulong? target = r.GetValue(to) is string t ? ParseCount(t) : null;
            string work = r.GetValue(dir) ?? Directory.CreateTempSubdirectory("vmstate-replay-").FullName;
            return RunReplay(rec, work, target, r.GetValue(gdb), ct).GetAwaiter().GetResult();
        })));
        return command;
    }

    private static async Task<int> RunReplay(ReplayRecording rec, string work, ulong? target, int? gdbPort, CancellationToken ct)
    {
        await using ReplaySession session = await ReplaySession.StartAsync(rec, work, gdbPort, ct);
        Console.Error.WriteLine($"vmstate rr replay: QEMU {session.Info.ProcessId} replaying {TerminalText.Escape(rec.Directory)}; console files in {TerminalText.Escape(session.Info.Directory)}");
        if (target is ulong icount)
        {
            ulong at = await session.RunToAsync(icount, ct);
            if (session.Ended)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"replay ended before instruction {icount}"));
                return 1;
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"paused at instruction {at}"));
            Console.WriteLine($"qmp {session.Info.QmpSocket}");
            if (gdbPort is int port)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"gdb tcp:127.0.0.1:{port}"));
            }

            Console.Out.Flush();
            Console.Error.WriteLine("vmstate rr replay: paused; live commands with --qmp above; Ctrl-C ends the replay (or cont over QMP runs it to the end)");
            try
            {
                await session.WaitForEndAsync(ct);
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("vmstate rr replay: stopped");
                return 0;
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"replay ended at instruction {rec.InstructionCount}"));
            return 0;
        }

        ulong end = await session.RunToEndAsync(ct);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"replay ended at instruction {end}"));
        return 0;
    }

    private static Command Info()
    {
        var recording = new Argument<string>("REC") { Description = "a recording directory (vmstate rr record)" };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("info", "Show what a recording holds: QEMU version, command line, instruction count, duration");
        command.Arguments.Add(recording);
        command.Options.Add(json);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            ReplayRecording rec = ReplayRecording.Open(r.GetValue(recording)!);
            if (r.GetValue(json))
            {
                using Stream stdout = Console.OpenStandardOutput();
                stdout.Write(rec.ToJson());
            }
            else
            {
                Console.WriteLine(Describe(rec));
            }

            return 0;
        }));
        return command;
    }

    private static string Describe(ReplayRecording rec) => string.Create(CultureInfo.InvariantCulture,
        $"recording {TerminalText.Escape(rec.Directory)}\n  QEMU {TerminalText.Escape(rec.QemuVersion)} ({TerminalText.Escape(rec.QemuPackage)})\n  instructions {rec.InstructionCount}\n  duration {rec.Duration.TotalSeconds:F1} s, ended: {End(rec.End)}\n  log {Hex.Size((ulong)rec.LogBytes)}, {rec.Drives.Count} disk(s)\n  command {TerminalText.Escape(string.Join(' ', rec.Command))}");

    private static string End(ReplayEndReason end) => end switch
    {
        ReplayEndReason.Interrupted => "stopped by the user",
        ReplayEndReason.GuestShutdown => "the guest powered off",
        _ => "QEMU exited",
    };

    private static ulong ParseCount(string text)
    {
        bool hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        return ulong.TryParse(hex ? text[2..] : text, hex ? NumberStyles.AllowHexSpecifier : NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)
            ? v
            : throw new ArgumentException($"--to {text} is not an instruction count");
    }
}
