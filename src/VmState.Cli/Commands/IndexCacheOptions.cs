using System.CommandLine;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary>
/// --cache-dir and --no-cache, on every command that opens a snapshot file: the index cache (see
/// <see cref="IndexCache"/>) is on by default, in <see cref="IndexCache.DefaultDirectory"/>.
/// </summary>
internal sealed class IndexCacheOptions
{
    private readonly Option<string?> _directory = new("--cache-dir")
    {
        Description = $"keep the RAM index of large snapshot files here (default: ${IndexCache.DirectoryVariable}, else $XDG_CACHE_HOME/vmstate/index or ~/.cache/vmstate/index)",
    };

    private readonly Option<bool> _off = new("--no-cache") { Description = "neither read nor write the snapshot index cache" };

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public IndexCacheOptions(Command command)
    {
        command.Options.Add(_directory);
        command.Options.Add(_off);
    }

    /// <summary>The cache the options ask for (null with --no-cache or when there is no home directory); <paramref name="report"/> receives its diagnostics.</summary>
    public IndexCache? Get(ParseResult r, Action<string>? report = null)
    {
        if (r.GetValue(_off))
        {
            return null;
        }

        string? directory = r.GetValue(_directory) ?? IndexCache.DefaultDirectory;
        return directory is null ? null : new IndexCache(directory) { Report = report };
    }
}
