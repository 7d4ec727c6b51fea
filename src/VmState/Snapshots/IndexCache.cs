namespace VmState.Snapshots;

/// <summary>
/// Where <see cref="SnapshotLoader"/> keeps the RAM page index of large migration streams (plain streams, the
/// stream inside a <c>virsh save</c> file, a qcow2 snapshot's vmstate), so opening the same unchanged file again
/// skips reading every page record: a 3 GB stream is then parsed in milliseconds instead of seconds.
/// </summary>
/// <remarks>
/// <para>An entry is one file in <see cref="Directory"/>, named after the input's device, inode and which stream of
/// the file it indexes. It is used only when everything it recorded about the input still holds: device, inode,
/// size, modification time (to the 100 ns .NET reports), and a SHA-256 of the input's first and last 64 KiB;
/// anything else (and any entry that does not decode, fails its own SHA-256, or does not fit the stream section by
/// section) is ignored and replaced after a fresh parse. So touching, appending to or rewriting the file
/// invalidates its entry. The cache never changes an answer: the device sections are parsed from the stream every
/// time, and a replayed index must match where each RAM chunk of the stream starts.</para>
/// <para>RAM index entries are written only for streams of at least <see cref="MinimumStreamBytes"/> (notes, such
/// as the kernel's location, for streams of any size), atomically (a
/// temporary file renamed over the entry), with mode 0600 in a directory created with mode 0700, and only
/// in <see cref="Directory"/>, never beside the input. Failing to write one is not an error.</para>
/// <para>The directory is trusted like the user's home: an entry that decodes and fits the stream is believed about
/// where each page is. Entries are therefore ignored when they or the directory are writable by group or others;
/// point <see cref="Directory"/> only at a directory you own.</para>
/// </remarks>
public sealed record IndexCache
{
    /// <summary>The default <see cref="MinimumStreamBytes"/>: 64 MiB, below which a fresh parse takes tens of milliseconds.</summary>
    public const long DefaultMinimumStreamBytes = 64L << 20;

    /// <summary>The environment variable that overrides <see cref="DefaultDirectory"/>.</summary>
    public const string DirectoryVariable = "VMSTATE_INDEX_CACHE";

    /// <summary>Uses (and creates when needed) <paramref name="directory"/>.</summary>
    /// <exception cref="ArgumentException">The directory is empty.</exception>
    public IndexCache(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = Path.GetFullPath(directory);
    }

    /// <summary>The directory holding the entries.</summary>
    public string Directory { get; }

    /// <summary>Streams shorter than this keep no RAM index (their fresh parse is cheap); their notes are still kept.</summary>
    public long MinimumStreamBytes { get; init; } = DefaultMinimumStreamBytes;

    /// <summary>
    /// Receives one line per use of the cache, for diagnostics: whether an entry was used and why not, and whether
    /// one was written (e.g. "hit", "no entry; written (2113 bytes)", "the file changed since the entry was written;
    /// written (…)"). Null for none.
    /// </summary>
    public Action<string>? Report { get; init; }

    /// <summary>
    /// The directory the CLI uses unless told otherwise: <c>$VMSTATE_INDEX_CACHE</c> when set, else
    /// <c>$XDG_CACHE_HOME/vmstate/index</c>, else <c>~/.cache/vmstate/index</c>; null when there is no home directory.
    /// </summary>
    public static string? DefaultDirectory
    {
        get
        {
            string? explicitDirectory = Environment.GetEnvironmentVariable(DirectoryVariable);
            if (!string.IsNullOrEmpty(explicitDirectory))
            {
                return explicitDirectory;
            }

            // XDG Base Directory Specification: a relative XDG_CACHE_HOME is invalid and ignored.
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (!string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg))
            {
                return Path.Combine(xdg, "vmstate", "index");
            }

            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            return string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".cache", "vmstate", "index");
        }
    }
}
