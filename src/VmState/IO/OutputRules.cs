namespace VmState.IO;

/// <summary>
/// What a command's outputs must respect: the files it reads (no output may be one of them, by file identity), the
/// widest permission an output may have (no wider than any input's, so guest RAM in a 0640 snapshot does not become
/// world-readable in a 0644 core; owner-only for a running VM's memory), and whether an existing file may be replaced.
/// </summary>
public sealed class OutputRules
{
    /// <summary>The permission of outputs whose input is not a file (a running VM): owner read/write only.</summary>
    public const UnixFileMode PrivateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private const UnixFileMode ReadWriteBits = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead |
        UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;

    private readonly List<(string Path, FileIdentity Identity)> _inputs;
    private readonly List<(string Path, FileIdentity Identity)> _storeDirectories = [];

    private OutputRules(List<(string Path, FileIdentity Identity)> inputs, UnixFileMode mode, bool allowReplace)
    {
        _inputs = inputs;
        foreach ((string path, FileIdentity _) in inputs)
        {
            // A capture of a history store (STORE@N) is read through its capture file, but the whole directory is the
            // input: an output written among its packs, index or manifest would be a file the store does not know, or
            // replace one it does.
            string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            if (IsHistoryStore(dir) && FileIdentity.TryGet(dir, out FileIdentity id) && !_storeDirectories.Exists(d => d.Identity == id))
            {
                _storeDirectories.Add((dir, id));
            }
        }

        Mode = mode;
        AllowReplace = allowReplace;
    }

    /// <summary>The permission outputs are created with (the process umask still applies).</summary>
    public UnixFileMode Mode { get; }

    /// <summary>Whether an existing file that is not an input may be replaced.</summary>
    public bool AllowReplace { get; }

    /// <summary>The input files, with the identity each had when the rules were made.</summary>
    public IReadOnlyList<(string Path, FileIdentity Identity)> Inputs => _inputs;

    /// <summary>
    /// Rules for outputs made from <paramref name="inputPaths"/> (paths that are not existing files, such as a QMP
    /// socket's description of a running VM, are ignored; with no file input the mode is <see cref="PrivateMode"/>).
    /// </summary>
    public static OutputRules ForInputs(IEnumerable<string?> inputPaths, bool allowReplace = true)
    {
        var inputs = new List<(string, FileIdentity)>();
        UnixFileMode mode = ReadWriteBits;
        foreach (string? path in inputPaths)
        {
            if (path is null || !File.Exists(path) || !FileIdentity.TryGet(path, out FileIdentity id))
            {
                continue;
            }

            inputs.Add((path, id));
            if (!OperatingSystem.IsWindows())
            {
                mode &= File.GetUnixFileMode(path);
            }
        }

        return new OutputRules(inputs, inputs.Count == 0 ? PrivateMode : mode, allowReplace);
    }

    /// <summary>Rules for outputs that read no file.</summary>
    public static OutputRules None { get; } = new([], PrivateMode, allowReplace: true);

    /// <summary>The same rules with an existing output never replaced.</summary>
    public OutputRules WithoutReplace() => new(_inputs, Mode, allowReplace: false);

    /// <summary>
    /// Throws <see cref="ArgumentException"/> when <paramref name="target"/> is one of the inputs (by identity), or
    /// exists while replacing is not allowed.
    /// </summary>
    public void CheckTarget(string target)
    {
        if (!FileIdentity.TryGet(target, out FileIdentity id))
        {
            // Nothing there (a directory would have an identity).
            CheckNotInStore(target);
            return;
        }

        if (InputWithIdentity(id) is string path)
        {
            string how = string.Equals(Path.GetFullPath(path), Path.GetFullPath(target), StringComparison.Ordinal)
                ? string.Empty
                : $" under another name (a link: both are {id})";
            throw new ArgumentException($"the output {target} is the input {path}{how}; inputs are never modified: choose another output");
        }

        if (Directory.Exists(target))
        {
            throw new ArgumentException($"the output {target} is a directory");
        }

        CheckNotInStore(target);

        if (!AllowReplace)
        {
            throw new ArgumentException($"the output {target} exists and is not replaced");
        }
    }

    /// <summary>True when <paramref name="directory"/> holds a history store: a <c>manifest</c> that starts with its magic "VMSHIST1".</summary>
    private static bool IsHistoryStore(string directory)
    {
        string manifest = Path.Combine(directory, "manifest");
        Span<byte> magic = stackalloc byte[8];
        try
        {
            using var f = new FileStream(manifest, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
            return f.Read(magic) == 8 && magic.SequenceEqual("VMSHIST1"u8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private void CheckNotInStore(string target)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(target));
        if (dir is not null && _storeDirectories.Count > 0 && FileIdentity.TryGet(dir, out FileIdentity id))
        {
            foreach ((string store, FileIdentity storeId) in _storeDirectories)
            {
                if (storeId == id)
                {
                    throw new ArgumentException($"the output {target} is inside the history store {store}, an input; a store's files are written only by its writer: choose another directory");
                }
            }
        }
    }

    /// <summary>The input whose identity <paramref name="target"/> has (it is that input under some name), or null.</summary>
    public string? InputMatching(string target) =>
        FileIdentity.TryGet(target, out FileIdentity id) ? InputWithIdentity(id) : null;

    private string? InputWithIdentity(FileIdentity id)
    {
        foreach ((string path, FileIdentity input) in _inputs)
        {
            if (id == input)
            {
                return path;
            }
        }

        return null;
    }
}
