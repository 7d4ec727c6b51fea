using System.CommandLine;
using VmState.Cli.Commands;

namespace VmState.Cli;

/// <summary>Entry point of the <c>vmstate</c> command.</summary>
public static class Program
{
    /// <summary>Runs the command line.</summary>
    public static int Main(string[] args)
    {
        // Guest strings never reach the terminal as control sequences; Spectre's own (colour) sequences go to the
        // raw stdout, and every guest string it renders is escaped where it is added.
        TerminalText.Install();
        Spectre.Console.AnsiConsole.Console = TerminalText.CreateConsole(TerminalText.RawOut, Console.IsOutputRedirected);
        // A background snapshot this process reads is let finish even if this process is killed (CaptureGuard).
        VmState.Live.CaptureGuard.Command = TraceCommand.SelfCommand("capture-guard");
        var root = new RootCommand("vmstate: read, extract and change the state of QEMU/KVM virtual machines");
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(ExtractCommand.Create());
        root.Subcommands.Add(SnapshotsCommand.Create());
        root.Subcommands.Add(TranslateCommand.Create());
        root.Subcommands.Add(ReadCommand.Create());
        root.Subcommands.Add(SnapshotCommand.Create());
        root.Subcommands.Add(EditCommand.Create());
        root.Subcommands.Add(InjectCommand.Create());
        root.Subcommands.Add(GdbServerCommand.Create());
        root.Subcommands.Add(DoctorCommand.Create());
        root.Subcommands.Add(ListCommand.Create());
        root.Subcommands.Add(FleetCommand.Create());
        root.Subcommands.Add(AgentCommand.Create());
        root.Subcommands.Add(SearchCommand.Create());
        root.Subcommands.Add(KernelInfoCommand.Create());
        root.Subcommands.Add(PsCommand.Create());
        root.Subcommands.Add(SymbolsCommand.Create());
        root.Subcommands.Add(TypesCommand.Create());
        root.Subcommands.Add(ModulesCommand.Create());
        root.Subcommands.Add(NetdevCommand.Create());
        root.Subcommands.Add(PstreeCommand.Create());
        root.Subcommands.Add(DmesgCommand.Create());
        root.Subcommands.Add(MapsCommand.Create());
        root.Subcommands.Add(ProcdumpCommand.Create());
        root.Subcommands.Add(TraceCommand.Create());
        root.Subcommands.Add(RecordCommand.Create());
        root.Subcommands.Add(MountCommand.Create());
        root.Subcommands.Add(MountCommand.CreateUnmount());
        root.Subcommands.Add(TraceCommand.Guard());
        root.Subcommands.Add(RecordCommand.Guard());
        root.Subcommands.Add(HistoryCommand.Create());
        root.Subcommands.Add(RrCommand.Create());
        root.Subcommands.Add(ForkCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        // No response files: an argument starting with @ is the argument itself (rr goto REC @FIND-RESULT.json).
        var parsing = new ParserConfiguration { ResponseFileTokenReplacer = null };
        root.Subcommands.Add(WatchCommand.Create(inner => root.Parse(inner, parsing).Invoke()));
        return root.Parse(args, parsing).Invoke();
    }
}
