using System.Text;
using VmState.IO;

namespace VmState.Export;

/// <summary>
/// A directory, fixed by whoever starts a service, into which a remote client may write files by bare name (the
/// GDB server's <c>monitor save NAME</c>). A client chooses only the name: it cannot leave the directory, replace a
/// file that exists (unless overwriting was allowed when the directory was set up), nor ever replace the input the
/// service reads, whatever link leads to it. Files are written under a temporary name and renamed into place, and
/// are created no more readable than the input.
/// </summary>
public sealed class SaveDirectory
{
    /// <summary>Longest accepted name, in UTF-8 bytes (NAME_MAX of Linux file systems).</summary>
    public const int MaxNameBytes = 255;

    private readonly OutputRules _rules;

    /// <summary>
    /// Sets up <paramref name="directory"/> (which must exist) for saves that must never replace
    /// <paramref name="protectedInput"/> (null when the input is not a file).
    /// </summary>
    public SaveDirectory(string directory, bool allowOverwrite, string? protectedInput)
    {
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"save directory {directory} does not exist");
        }

        Path = System.IO.Path.GetFullPath(directory);
        AllowOverwrite = allowOverwrite;
        // The input's mode and identity are taken once, now, so a client cannot change what is protected.
        _rules = OutputRules.ForInputs([protectedInput], allowOverwrite);
    }

    /// <summary>The directory (absolute).</summary>
    public string Path { get; }

    /// <summary>Whether an existing file (never the input) may be replaced.</summary>
    public bool AllowOverwrite { get; }

    /// <summary>
    /// The mode new files are created with: the input's read and write bits (no execute, set-id or sticky bits), or
    /// 0600 when there is no input file; the process umask narrows it further.
    /// </summary>
    public UnixFileMode FileMode => _rules.Mode;

    /// <summary>Why <paramref name="name"/> is not acceptable as a bare file name, or null when it is.</summary>
    public static string? CheckName(string name)
    {
        if (name.Length == 0)
        {
            return "the name is empty";
        }

        if (name is "." or "..")
        {
            return $"\"{name}\" is a directory, not a file name";
        }

        if (name.Contains('/', StringComparison.Ordinal) || name.Contains('\\', StringComparison.Ordinal))
        {
            return "give a bare file name, without / or \\ (files are saved in the server's save directory)";
        }

        if (name.Contains("..", StringComparison.Ordinal))
        {
            return "the name must not contain \"..\"";
        }

        // A leading dot would hide the file (and could clash with our own temporaries, which start with one); a
        // leading dash makes the file awkward to handle with command-line tools.
        if (name[0] is '.' or '-')
        {
            return $"the name must not start with '{name[0]}'";
        }

        foreach (char c in name)
        {
            if (char.IsControl(c) || char.IsSurrogate(c))
            {
                return $"the name contains the control or invalid character U+{(int)c:X4}";
            }
        }

        if (Encoding.UTF8.GetByteCount(name) > MaxNameBytes)
        {
            return $"the name is longer than {MaxNameBytes} bytes";
        }

        return null;
    }

    /// <summary>
    /// Writes a file called <paramref name="name"/> in the directory with <paramref name="write"/> and returns its
    /// path. <see cref="ArgumentException"/> for a name that is not a bare file name; <see cref="IOException"/> when
    /// the file exists (and overwriting was not allowed), when it is the input, or when writing fails (the
    /// temporary file is then deleted and nothing else changes).
    /// </summary>
    public string Write(string name, Action<Stream> write)
    {
        if (CheckName(name) is string problem)
        {
            throw new ArgumentException($"cannot save \"{Printable(name)}\": {problem}");
        }

        string path = System.IO.Path.Combine(Path, name);
        bool exists = File.Exists(path) || Directory.Exists(path) || new FileInfo(path).LinkTarget is not null;
        if (exists)
        {
            if (!AllowOverwrite)
            {
                throw new IOException($"cannot save {name}: it exists in {Path} (the server replaces files only when started with --allow-overwrite)");
            }

            // Compared by device and inode: a hard link or a symlink to the input has the input's identity.
            if (_rules.InputMatching(path) is not null)
            {
                throw new IOException($"cannot save {name}: it is the snapshot being served ({_rules.Inputs[0].Identity})");
            }
        }

        // OutputFile checks again just before the rename, creates the temporary with the input's mode, and removes
        // temporaries that a killed server left in the directory.
        OutputFile.Write(path, _rules, write);
        return path;
    }

    private static string Printable(string name)
    {
        var sb = new StringBuilder();
        foreach (char c in name.Length > 64 ? name[..64] : name)
        {
            sb.Append(char.IsControl(c) ? $"\\x{(int)c:x2}" : c);
        }

        return name.Length > 64 ? sb.Append('…').ToString() : sb.ToString();
    }
}
