using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VmState.Replay;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate rr record -o REC -- QEMU ARGS...</c>, <c>vmstate rr replay REC [--to ICOUNT] [--gdb PORT] [--dir DIR]</c>,
/// <c>vmstate rr info REC</c>, <c>vmstate rr index REC</c>, <c>vmstate rr find REC PREDICATE</c>, <c>vmstate rr goto REC
/// ICOUNT</c>: QEMU's deterministic record/replay (<see cref="ReplayRecorder"/>, <see cref="ReplaySession"/>), its index
/// (<see cref="ReplayIndexer"/>) and exact answers (<see cref="ReplayFinder"/>).
/// </summary>
internal static class RrCommand
{
    public static Command Create()
    {
        var command = new Command("rr", "Deterministic record/replay of a VM with QEMU's -icount record/replay: record once, replay as often as needed, pause a replay at an instruction count");
        command.Subcommands.Add(Record());
        command.Subcommands.Add(Replay());
        command.Subcommands.Add(Info());
        command.Subcommands.Add(Index());
        command.Subcommands.Add(Find());
        command.Subcommands.Add(Goto());
        return command;
    }

    /// <summary>The REC argument: a recording directory.</summary>
    private static Argument<string> RecordingArgument(string description = "a recording directory (vmstate rr record)") => new("REC") { Description = description };

    /// <summary>--dir of replay and goto: the one replay's directory, kept.</summary>
    private static Option<string?> ReplayDirOption() => new("--dir") { Description = "the replay's work directory: disk overlays and console files (default: a new directory under the temporary directory)" };

    /// <summary>--dir of index and find: the replays' directory, removed at the end when it was not given (<see cref="WithWork"/>).</summary>
    private static Option<string?> ReplaysDirOption() => new("--dir") { Description = "the replays' work directory (default: a new directory under the temporary directory, removed at the end)" };

    /// <summary>--no-checkpoints of replay, goto and find.</summary>
    private static Option<bool> NoCheckpointsOption() => new("--no-checkpoints") { Description = "replay from power-on, without loading the checkpoints rr index saved" };

    /// <summary>The replay's work directory: --dir, or a new one under the temporary directory.</summary>
    private static string ReplayDirectory(string? dir) => dir ?? Directory.CreateTempSubdirectory("vmstate-replay-").FullName;

    /// <summary>
    /// A subcommand on one recording: REC, then <paramref name="more"/> (arguments and options, in that order);
    /// <paramref name="run"/> gets the recording opened.
    /// </summary>
    private static Command RecordingCommand(string name, string description, Argument<string> recording, Symbol[] more, Func<ParseResult, ReplayRecording, CancellationToken, int> run)
    {
        var command = new Command(name, description);
        command.Arguments.Add(recording);
        foreach (Symbol s in more)
        {
            if (s is Argument a)
            {
                command.Arguments.Add(a);
            }
            else
            {
                command.Options.Add((Option)s);
            }
        }

        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() => run(r, ReplayRecording.Open(r.GetValue(recording)!), ct))));
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
        var recording = RecordingArgument();
        var to = new Option<string?>("--to") { Description = "pause the replay at this instruction count (decimal, or hex with 0x) and keep it there until Ctrl-C" };
        var gdb = new Option<int?>("--gdb") { Description = "start QEMU's gdbstub on 127.0.0.1:PORT (reverse-stepi and reverse-continue work in a replay)" };
        var dir = ReplayDirOption();
        var noCheckpoints = NoCheckpointsOption();
        return RecordingCommand("replay", "Replay a recording: to its end (the console output is the recorded one, byte for byte), or paused at --to ICOUNT with a QMP socket for every live command (ps --qmp, maps, dmesg, read)", recording, [to, gdb, dir, noCheckpoints], (r, rec, ct) =>
        {
            ulong? target = r.GetValue(to) is string t ? RrArguments.ParseCount(t, "--to") : null;
            string work = ReplayDirectory(r.GetValue(dir));
            // A replay to the end starts at power-on (its console files are the whole run's); a pause starts from the nearest checkpoint.
            ReplayCheckpoints? checkpoints = target is null || r.GetValue(noCheckpoints) ? null : ReplayCheckpoints.TryOpenAsync(rec, ct).GetAwaiter().GetResult();
            return RunReplay(rec, work, target, r.GetValue(gdb), ct, checkpoints).GetAwaiter().GetResult();
        });
    }

    private static async Task<int> RunReplay(ReplayRecording rec, string work, ulong? target, int? gdbPort, CancellationToken ct, ReplayCheckpoints? checkpoints, bool hints = false, bool reverse = false)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return await RunReplayOnce(rec, work, target, gdbPort, ct, checkpoints, hints, reverse);
            }
            catch (TimeoutException e) when (hints && attempt == 1)
            {
                // QEMU's replay stalled (ReplaySession): goto tries one fresh replay.
                Console.Error.WriteLine($"vmstate rr goto: {e.Message}; trying once more");
            }
        }
    }

    private static async Task<int> RunReplayOnce(ReplayRecording rec, string work, ulong? target, int? gdbPort, CancellationToken ct, ReplayCheckpoints? checkpoints, bool hints, bool reverse)
    {
        try
        {
            return await RunReplaySessionAsync(rec, work, target, gdbPort, ct, checkpoints, hints, reverse);
        }
        finally
        {
            if (checkpoints is not null)
            {
                // The copies of the checkpoint images (hundreds of MiB) are of no use once the replay ended; the console files stay.
                foreach (string name in rec.Drives.Where(d => !d.ReadOnly).Select(d => d.OverlayName).Append("snapshots.qcow2"))
                {
                    File.Delete(Path.Combine(work, name));
                    File.Delete(Path.Combine(work, name + ".copied"));
                }
            }
        }
    }

    private static async Task<int> RunReplaySessionAsync(ReplayRecording rec, string work, ulong? target, int? gdbPort, CancellationToken ct, ReplayCheckpoints? checkpoints, bool hints, bool reverse)
    {
        // From the nearest checkpoint before the count (before it: so a reverse-stepi there has one to go back to), or
        // with reverse execution asked for, from power-on's (QEMU 7.2 loads only that one while it runs).
        ulong start = checkpoints is null || reverse || target is not ulong t || t == 0 ? 0 : checkpoints.NearestAtOrBefore(t - 1);
        await using ReplaySession session = await ReplaySession.StartAsync(rec, work, gdbPort, ct, checkpoints, start, onlyStart: gdbPort is not null);
        Console.Error.WriteLine($"vmstate rr {(hints ? "goto" : "replay")}: QEMU {session.Info.ProcessId} replaying {TerminalText.Escape(rec.Directory)}; console files in {TerminalText.Escape(session.Info.Directory)}"
            + (session.StartCheckpoint is ulong c ? string.Create(CultureInfo.InvariantCulture, $"; started from checkpoint {c}") : string.Empty));
        if (gdbPort is not null)
        {
            // QEMU 7.2's reverse-continue deadlocks on a multi-core host unless QEMU runs on one CPU (ReplayReversePinning).
            try
            {
                int cpu = ReplayReversePinning.Apply(session.Info.ProcessId);
                Console.Error.WriteLine($"vmstate rr {(hints ? "goto" : "replay")}: QEMU pinned to CPU {cpu}, its main thread at nice {ReplayReversePinning.MainThreadNice} (so that gdb's reverse-continue completes)");
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"vmstate rr {(hints ? "goto" : "replay")}: warning: could not pin QEMU ({e.Message}); gdb's reverse-continue may hang QEMU 7.2");
            }
        }

        if (target is ulong icount)
        {
            ulong at = await session.SeekAsync(icount, ct);
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

            if (hints)
            {
                Console.WriteLine($"  vmstate ps --qmp {TerminalText.Escape(session.Info.QmpSocket)}");
                if (gdbPort is int p)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  gdb -ex 'target remote 127.0.0.1:{p}'"));
                }
            }

            Console.Out.Flush();
            Console.Error.WriteLine($"vmstate rr {(hints ? "goto" : "replay")}: paused; live commands with --qmp above; Ctrl-C ends the replay (or cont over QMP runs it to the end)");
            try
            {
                await session.WaitForEndAsync(ct);
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine($"vmstate rr {(hints ? "goto" : "replay")}: stopped");
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
        var recording = RecordingArgument();
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

    private static Command Index()
    {
        var recording = RecordingArgument();
        var every = new Option<string?>("--every") { Description = "pause every N instructions (decimal, or hex with 0x; default: 100 points over the recording, at least 1000000 apart)" };
        var compare = new Option<bool>("--compare") { Description = "also time a plain replay of the recording to its end first, and report the index pass's cost relative to it" };
        var checkpoints = new Option<string?>("--checkpoints") { Description = $"N: save a checkpoint (a QEMU snapshot, in REC/{ReplayCheckpoints.DirectoryName}) at power-on and at every Nth point, so rr find, rr goto and reverse execution start near where they go; 0: none; auto (the default): at power-on, then at a point once the replay since the last checkpoint took {ReplayIndexer.AdaptiveReplayPerSave}x as long as the last save (so they cost at most about 1/{ReplayIndexer.AdaptiveReplayPerSave} of the replay)" };
        var dir = ReplaysDirOption();
        return RecordingCommand("index", $"Replay a recording once, paused at regular instruction counts, and record what the Linux layer sees at each (processes, modules, network devices, kernel log) into REC/{ReplayIndex.FileName} for rr find", recording, [every, checkpoints, compare, dir], (r, rec, ct) =>
        {
            ulong interval = r.GetValue(every) is string e ? RrArguments.ParseCount(e, "--every") : ReplayIndexer.DefaultEvery(rec);
            string? given = r.GetValue(checkpoints);
            int n = given is null or "auto" ? ReplayIndexer.Adaptive
                : int.TryParse(given, NumberStyles.None, CultureInfo.InvariantCulture, out int k) ? k
                : throw new ArgumentException($"--checkpoints is 0 (none), a number of points or auto, not {TerminalText.Escape(given)}");
            if (n != 0 && ReplayIndexer.CheckpointsUnsupported(rec) is string why)
            {
                if (given is not null)
                {
                    throw new ArgumentException($"--checkpoints {TerminalText.Escape(given)}: {why}");
                }

                Console.Error.WriteLine($"vmstate rr index: no checkpoints: {why}");
                n = 0;
            }

            return WithWork(r.GetValue(dir), "vmstate-rr-index-", work => RunIndex(rec, interval, n, r.GetValue(compare), work, ct));
        });
    }

    private static async Task<int> RunIndex(ReplayRecording rec, ulong every, int checkpointEvery, bool compare, string work, CancellationToken ct)
    {
        TimeSpan? plain = null;
        if (compare)
        {
            var clock = Stopwatch.StartNew();
            await using (ReplaySession session = await ReplaySession.StartAsync(rec, Path.Combine(work, "plain"), null, ct))
            {
                await session.RunToEndAsync(ct);
            }

            plain = clock.Elapsed;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"vmstate rr index: plain replay to the end in {plain.Value.TotalSeconds:F1} s"));
        }

        var clock2 = Stopwatch.StartNew();
        var progress = new Progress<ReplayIndexPoint>(p => Console.Error.WriteLine((p.View.KernelError is string error
            ? string.Create(CultureInfo.InvariantCulture, $"vmstate rr index: {p.Icount} ({clock2.Elapsed.TotalSeconds:F1} s): no kernel: {error}")
            : string.Create(CultureInfo.InvariantCulture, $"vmstate rr index: {p.Icount} ({clock2.Elapsed.TotalSeconds:F1} s): {p.View.Processes.Count} processes, {p.View.Modules.Count} modules, log up to {p.View.LogNext}"))
            + (p.Checkpoint ? "; checkpoint" : string.Empty)
            + string.Create(CultureInfo.InvariantCulture, $" (replay {p.RunTime.TotalMilliseconds:F0} ms, read {p.ReadTime.TotalMilliseconds:F0} ms{(p.Checkpoint ? $", checkpoint {p.CheckpointTime.TotalMilliseconds:F0} ms" : string.Empty)})")));
        ReplayIndex index = await ReplayIndexer.BuildAsync(rec, every, Path.Combine(work, "index"), plain, progress, ct, checkpointEvery);
        int withKernel = index.Points.Count(p => p.View.KernelError is null);
        Console.WriteLine($"index {TerminalText.Escape(ReplayIndex.PathOf(rec))}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  points {index.Points.Count} (every {index.Every} instructions; the guest kernel read at {withKernel})"));
        double checkpointCost = Sum(index, p => p.Checkpoint ? p.CheckpointTime : TimeSpan.Zero) + (index.PowerOnCheckpointTime?.TotalSeconds ?? 0);
        if (checkpointEvery != 0 && await ReplayCheckpoints.TryOpenAsync(rec, ct) is ReplayCheckpoints saved)
        {
            long bytes = new DirectoryInfo(saved.Directory).EnumerateFiles().Sum(f => f.Length);
            string how = checkpointEvery == ReplayIndexer.Adaptive
                ? $"power-on, then where the replay since the last took {ReplayIndexer.AdaptiveReplayPerSave}x the last save"
                : string.Create(CultureInfo.InvariantCulture, $"power-on and every {checkpointEvery} point(s)");
            double replay = Sum(index, p => p.RunTime);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  checkpoints {saved.Counts.Count} ({how}) in {TerminalText.Escape(saved.Directory)}, {Hex.Size((ulong)bytes)}; saving them took {checkpointCost:F1} s, {(replay > 0 ? checkpointCost / replay : 0):F2}x the replay"));
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  index pass {index.PassTime!.Value.TotalSeconds:F1} s") + (plain is TimeSpan t
            ? string.Create(CultureInfo.InvariantCulture, $", plain replay {t.TotalSeconds:F1} s: {index.PassTime.Value / t:F2}x a plain replay")
            : ", plain replay not timed (--compare times it)"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  of which replaying {Sum(index, p => p.RunTime):F1} s, reading the guest {Sum(index, p => p.ReadTime):F1} s, checkpoints {checkpointCost:F1} s (the rest: starting and ending QEMU)"));
        return 0;
    }

    private static double Sum(ReplayIndex index, Func<ReplayIndexPoint, TimeSpan> time) => index.Points.Sum(p => time(p).TotalSeconds);

    private static Command Find()
    {
        var recording = RecordingArgument("an indexed recording directory (vmstate rr index)");
        var process = new Option<string?>("--process") { Description = "the predicate: a process with this pid, comm or name exists" };
        var bytes = new Option<string?>("--bytes") { Description = "the predicate: memory holds these bytes (hex), at --phys or --virt ADDR (exactly there) or ADDR..END (anywhere in the range)" };
        var phys = new Option<string?>("--phys") { Description = "with --bytes: a guest-physical address or range ADDR..END" };
        var virt = new Option<string?>("--virt") { Description = "with --bytes: a kernel-virtual address or range ADDR..END" };
        var symbol = new Option<string?>("--symbol") { Description = "the predicate: the value of this kernel variable, with --equals V (it equals V) or --changes (every change)" };
        var size = new Option<int>("--size") { Description = "with --symbol: the variable's size in bytes (1, 2, 4 or 8)", DefaultValueFactory = _ => 8 };
        var equals = new Option<string?>("--equals") { Description = "with --symbol: the value (decimal, or hex with 0x)" };
        var changes = new Option<bool>("--changes") { Description = "with --symbol: every change of its value" };
        var brk = new Option<string?>("--break") { Description = "the predicate: a breakpoint on this kernel function is hit (QEMU's gdbstub on the replay)" };
        var pid = new Option<int?>("--pid") { Description = "with --break: only hits by this pid (or tgid)" };
        var hit = new Option<long>("--hit") { Description = "with --break: the Nth hit (counted from power-on; with --pid from the last index point before the pid exists)", DefaultValueFactory = _ => 1 };
        var before = new Option<string?>("--before") { Description = "with --break: the last hit before this instruction count instead" };
        var all = new Option<bool>("--all") { Description = "every transition, not just the first (for a yes/no predicate: where it becomes true)" };
        var dir = ReplaysDirOption();
        var noCheckpoints = NoCheckpointsOption();
        Option<bool> json = CommonOptions.Json();
        return RecordingCommand("find", "The exact instruction count where a predicate becomes true (or, with --all, every change): coarse from the index, then replays narrow it to one instruction; at the answer the predicate holds, one instruction earlier it does not", recording, [process, bytes, phys, virt, symbol, size, equals, changes, brk, pid, hit, before, all, dir, noCheckpoints, json], (r, rec, ct) =>
        {
            ReplayIndex index = ReplayIndex.TryLoad(rec) ?? throw new ArgumentException($"{rec.Directory} has no index: run vmstate rr index {rec.Directory} first");
            int given = new[] { r.GetValue(process) is not null, r.GetValue(bytes) is not null, r.GetValue(symbol) is not null, r.GetValue(brk) is not null }.Count(b => b);
            if (given != 1)
            {
                throw new ArgumentException("give one predicate: --process, --bytes, --symbol or --break");
            }

            return WithWork(r.GetValue(dir), "vmstate-rr-find-", async work =>
            {
                ReplayFindResult result;
                if (r.GetValue(brk) is string function)
                {
                    ulong? until = r.GetValue(before) is string b ? RrArguments.ParseCount(b, "--before") : null;
                    result = await ReplayFinder.FindBreakAsync(rec, index, function, r.GetValue(pid), r.GetValue(hit), until, work, ct, !r.GetValue(noCheckpoints));
                }
                else
                {
                    ReplayPredicate predicate = RrArguments.Predicate(r.GetValue(process), r.GetValue(bytes), r.GetValue(phys), r.GetValue(virt), r.GetValue(symbol), r.GetValue(size), r.GetValue(equals), r.GetValue(changes));
                    result = await ReplayFinder.FindAsync(rec, index, predicate, r.GetValue(all), work, ct, !r.GetValue(noCheckpoints));
                }

                Print(rec, result, r.GetValue(json));
                return result.Transitions.Count > 0 ? 0 : 1;
            });
        });
    }

    private static void Print(ReplayRecording rec, ReplayFindResult result, bool json)
    {
        if (json)
        {
            CommonOptions.WriteJson(w =>
            {
                w.WriteStartObject();
                w.WriteString("recording", rec.Directory);
                w.WriteString("predicate", result.Predicate);
                if (result.Transitions.Count > 0)
                {
                    w.WriteNumber("icount", result.Transitions[0].Icount);
                }
                else
                {
                    w.WriteNull("icount");
                }

                w.WriteStartArray("transitions");
                foreach (ReplayTransition t in result.Transitions)
                {
                    w.WriteStartObject();
                    w.WriteNumber("icount", t.Icount);
                    w.WriteString("before", t.Before);
                    w.WriteString("after", t.After);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                WriteOptional(w, "coarseFrom", result.CoarseFrom);
                WriteOptional(w, "coarseTo", result.CoarseTo);
                w.WriteNumber("replays", result.Replays);
                w.WriteNumber("stops", result.Stops);
                w.WriteNumber("checkpointLoads", result.CheckpointLoads);
                w.WriteNumber("skips", result.Skips);
                w.WriteNumber("seconds", Math.Round(result.Elapsed.TotalSeconds, 3));
                w.WriteEndObject();
            });
            return;
        }

        if (result.Transitions.Count == 0)
        {
            Console.WriteLine($"{TerminalText.Escape(result.Predicate)}: never, in the recording (at the index's points)");
        }

        foreach (ReplayTransition t in result.Transitions)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{t.Icount}  {TerminalText.Escape(t.Before)} -> {TerminalText.Escape(t.After)}"));
        }

        string coarse = result.CoarseFrom is ulong f ? string.Create(CultureInfo.InvariantCulture, $"between {f} and {(result.CoarseTo is ulong to ? to.ToString(CultureInfo.InvariantCulture) : "the end")}, ") : string.Empty;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"vmstate rr find: {TerminalText.Escape(result.Predicate)}: {coarse}{result.Replays} replay(s), {result.CheckpointLoads} checkpoint load(s), {result.Stops} stop(s){(result.Skips > 0 ? $", {result.Skips} skip(s) ahead" : string.Empty)}, {result.Elapsed.TotalSeconds:F1} s"));
    }

    private static void WriteOptional(Utf8JsonWriter w, string name, ulong? value)
    {
        if (value is ulong v)
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static Command Goto()
    {
        var recording = RecordingArgument();
        var target = new Argument<string>("ICOUNT") { Description = "an instruction count (decimal, or hex with 0x), or @FILE: the JSON of vmstate rr find --json (its \"icount\")" };
        var gdb = new Option<int?>("--gdb") { Description = "the gdbstub's port on 127.0.0.1 (default: a free one)" };
        var dir = ReplayDirOption();
        var noCheckpoints = NoCheckpointsOption();
        var reverse = new Option<bool>("--reverse") { Description = "start from the power-on checkpoint (rr index), the one QEMU 7.2's reverse execution can load: gdb's reverse-stepi and reverse-continue then work, each replaying from power-on" };
        return RecordingCommand("goto", "Leave a replay paused at an instruction count (or at a find result) with QEMU's gdbstub on loopback and a QMP socket for every live command, until Ctrl-C; with checkpoints (rr index) it starts from the nearest one", recording, [target, gdb, dir, noCheckpoints, reverse], (r, rec, ct) =>
        {
            string t = r.GetValue(target)!;
            ulong icount = t.StartsWith('@') ? FindResultCount(t[1..]) : RrArguments.ParseCount(t, "ICOUNT");
            string work = ReplayDirectory(r.GetValue(dir));
            ReplayCheckpoints? checkpoints = r.GetValue(noCheckpoints) ? null : ReplayCheckpoints.TryOpenAsync(rec, ct).GetAwaiter().GetResult();
            return RunReplay(rec, work, icount, r.GetValue(gdb) ?? FreePort(), ct, checkpoints, hints: true, reverse: r.GetValue(reverse)).GetAwaiter().GetResult();
        });
    }

    private static ulong FindResultCount(string file)
    {
        var info = new FileInfo(file);
        if (!info.Exists || info.Length > RrArguments.MaxFindResultBytes)
        {
            throw new ArgumentException($"{file} is not a result of vmstate rr find --json");
        }

        return RrArguments.FindResultCount(File.ReadAllBytes(file), file);
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static int WithWork(string? dir, string prefix, Func<string, Task<int>> body)
    {
        string work = dir ?? Directory.CreateTempSubdirectory(prefix).FullName;
        try
        {
            return body(work).GetAwaiter().GetResult();
        }
        finally
        {
            if (dir is null)
            {
                Directory.Delete(work, recursive: true);
            }
        }
    }

    private static string Describe(ReplayRecording rec) => string.Create(CultureInfo.InvariantCulture,
        $"recording {TerminalText.Escape(rec.Directory)}\n  QEMU {TerminalText.Escape(rec.QemuVersion)} ({TerminalText.Escape(rec.QemuPackage)})\n  instructions {rec.InstructionCount}\n  duration {rec.Duration.TotalSeconds:F1} s, ended: {End(rec.End)}\n  log {Hex.Size((ulong)rec.LogBytes)}, {rec.Drives.Count} disk(s)\n  command {TerminalText.Escape(string.Join(' ', rec.Command))}");

    private static string End(ReplayEndReason end) => end switch
    {
        ReplayEndReason.Interrupted => "stopped by the user",
        ReplayEndReason.GuestShutdown => "the guest powered off",
        _ => "QEMU exited",
    };
}
