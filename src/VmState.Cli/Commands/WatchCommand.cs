using System.CommandLine;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate watch [-n SECONDS] COMMAND...</c>: re-runs a vmstate command (typically a live view such as
/// <c>ps --qmp SOCKET</c>) every few seconds, redrawing the screen, until Ctrl-C.
/// </summary>
internal static class WatchCommand
{
    public static Command Create(Func<string[], int> run)
    {
        var interval = new Option<double>("--interval", "-n") { Description = "seconds between runs", DefaultValueFactory = _ => 2.0 };
        var count = new Option<int>("--count") { Description = "stop after this many runs (0: until Ctrl-C)", DefaultValueFactory = _ => 0 };
        var commandLine = new Argument<string[]>("COMMAND") { Description = "the vmstate command to repeat, e.g. ps --qmp /run/vm/qmp.sock", Arity = ArgumentArity.OneOrMore };
        var command = new Command("watch", "Re-run a vmstate command every few seconds (e.g. watch ps --qmp SOCKET)");
        command.Options.Add(interval);
        command.Options.Add(count);
        command.Arguments.Add(commandLine);
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction(async (r, ct) =>
        {
            string[] inner = [.. r.GetValue(commandLine)!, .. r.UnmatchedTokens];
            if (inner.Length == 0 || inner[0] == "watch")
            {
                Console.Error.WriteLine("vmstate: watch needs a command to repeat, e.g. vmstate watch ps --qmp SOCKET");
                return 2;
            }

            double seconds = Math.Max(0.1, r.GetValue(interval));
            int runs = r.GetValue(count);
            int code = 0;
            for (int i = 0; runs == 0 || i < runs; i++)
            {
                if (!Console.IsOutputRedirected)
                {
                    Console.Clear();
                }

                Console.WriteLine($"every {seconds:0.#} s: vmstate {string.Join(' ', inner)}    {DateTime.Now:HH:mm:ss}");
                code = run(inner);
                try
                {
                    if (runs == 0 || i + 1 < runs)
                    {
                        await Task.Delay(TimeSpan.FromSeconds(seconds), ct);
                    }
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            return code;
        });
        return command;
    }
}
