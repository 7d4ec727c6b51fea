using System.CommandLine;
using System.Text.Json;
using VmState.Linux;
using VmState.Editing;

namespace VmState.Cli.Commands;

/// <summary>
/// The input and output of the commands that write a new snapshot from an old one (<c>edit</c>, <c>inject</c>):
/// SNAPSHOT, --snapshot, --main-ram, -o, --tag and --in-place; the input is opened through <see cref="Vm"/>.
/// </summary>
internal sealed class SnapshotOutputOptions
{
    private readonly Argument<string> _input = CommonOptions.SnapshotArgument();
    private readonly Option<string?> _snapshot = CommonOptions.SnapshotName();
    private readonly Option<string?> _mainRam = CommonOptions.MainRam();
    private readonly Option<string> _output = new("--output", "-o") { Description = "the new snapshot (a migration stream)", Required = true };
    private readonly Option<string?> _tag = new("--tag") { Description = "name of the snapshot added to a qcow2 output (default: <base>-edited)" };
    private readonly Option<bool> _inPlace = new("--in-place") { Description = "add the snapshot to the input qcow2 image itself (give it as -o too)" };
    private readonly IndexCacheOptions _indexCache;

    /// <summary>Adds the argument and options to <paramref name="command"/>.</summary>
    public SnapshotOutputOptions(Command command)
    {
        command.Arguments.Add(_input);
        command.Options.Add(_output);
        command.Options.Add(_tag);
        command.Options.Add(_inPlace);
        command.Options.Add(_snapshot);
        command.Options.Add(_mainRam);
        _indexCache = new IndexCacheOptions(command);
    }

    /// <summary>The -o path.</summary>
    public string OutputPath(ParseResult r) => r.GetValue(_output)!;

    /// <summary>Opens the input (plain positional reads: the output copies the whole stream), locating its kernel with <paramref name="kernel"/>.</summary>
    public Vm Open(ParseResult r, KernelLocatorOptions? kernel = null) =>
        Vm.Open(r.GetValue(_input)!, CommonOptions.VmOptions(r.GetValue(_snapshot), raw: false, cacheReads: false, kernel, r.GetValue(_mainRam), _indexCache.Get(r)));

    /// <summary>Where the new snapshot goes, checked against the input and <paramref name="edited"/> (the other inputs).</summary>
    public SnapshotWriter.Target Target(ParseResult r, string[]? edited = null) =>
        new(OutputPath(r), r.GetValue(_tag), r.GetValue(_inPlace), edited);

    /// <summary>
    /// Reports a written snapshot: with <paramref name="json"/> one object (<c>output</c>, <c>written</c>, the counts
    /// <paramref name="counts"/> writes, then the array <paramref name="listName"/> of <paramref name="lines"/>);
    /// otherwise the lines, <paramref name="whenEmpty"/> when there are none, and <paramref name="summary"/>.
    /// </summary>
    public static void Report(bool json, string output, string written, string listName, IReadOnlyList<string> lines,
        Action<Utf8JsonWriter> counts, string summary, string? whenEmpty = null)
    {
        if (json)
        {
            CommonOptions.WriteJson(w =>
            {
                w.WriteStartObject();
                w.WriteString("output", output);
                w.WriteString("written", written);
                counts(w);
                w.WriteStartArray(listName);
                foreach (string line in lines)
                {
                    w.WriteStringValue(line);
                }

                w.WriteEndArray();
                w.WriteEndObject();
            });
            return;
        }

        foreach (string line in lines)
        {
            Console.WriteLine(line);
        }

        if (lines.Count == 0 && whenEmpty is not null)
        {
            Console.WriteLine(whenEmpty);
        }

        Console.WriteLine(summary);
    }
}
