using Microsoft.Win32.SafeHandles;

namespace VmState.IO;

/// <summary>
/// One output file of a command, written safely: under a hidden temporary name beside the target (created
/// exclusively, with a permission no wider than the inputs'), renamed into place only by <see cref="Commit"/>, and
/// deleted when disposed uncommitted. The target is compared with every input by file identity (device and inode),
/// so no spelling of an input's path (a symlink, a hard link, <c>dir/../x</c>) can be replaced by an output.
/// Temporaries that a killed run left behind are removed: a live writer holds an exclusive lock on its temporary
/// (.NET takes <c>flock(LOCK_EX)</c> for <see cref="FileShare.None"/>), so a temporary whose lock can be taken has
/// no writer any more.
/// </summary>
public sealed class OutputFile : IDisposable
{
    private readonly OutputRules _rules;
    private readonly FileStream _file;
    private bool _committed;
    private bool _released;

    private OutputFile(string path, string tempPath, FileStream file, OutputRules rules)
    {
        Path = path;
        TempPath = tempPath;
        _file = file;
        _rules = rules;
    }

    /// <summary>The final path.</summary>
    public string Path { get; }

    /// <summary>The temporary path written until <see cref="Commit"/>.</summary>
    public string TempPath { get; }

    /// <summary>The open temporary file (read/write), for positional writes.</summary>
    public SafeFileHandle Handle => _file.SafeFileHandle;

    /// <summary>
    /// Creates the temporary for <paramref name="path"/> after checking the target against the inputs of
    /// <paramref name="rules"/>; throws <see cref="ArgumentException"/> when the target is an input, or exists and
    /// the rules do not allow replacing it.
    /// </summary>
    public static OutputFile Create(string path, OutputRules rules)
    {
        string full = System.IO.Path.GetFullPath(path);
        rules.CheckTarget(full);
        string directory = System.IO.Path.GetDirectoryName(full)!;
        string name = System.IO.Path.GetFileName(full);
        RemoveStaleTemporaries(directory, name);
        string temp = System.IO.Path.Combine(directory, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.None,
            BufferSize = 1 << 16,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = rules.Mode;
        }

        return new OutputFile(full, temp, new FileStream(temp, options), rules);
    }

    /// <summary>Writes <paramref name="path"/> with <paramref name="write"/> (a stream on the temporary) and commits it.</summary>
    public static void Write(string path, OutputRules rules, Action<Stream> write)
    {
        using OutputFile output = Create(path, rules);
        using (Stream stream = output.OpenStream())
        {
            write(stream);
        }

        output.Commit();
    }

    /// <summary>A buffered stream on the temporary; disposing it flushes, the file stays open until commit.</summary>
    public Stream OpenStream() => new NonClosingStream(_file);

    /// <summary>
    /// Flushes and closes the temporary so that code which opens files by path (the qcow2 writer) can open it. The
    /// temporary then no longer holds its lock, so a concurrent run writing the same target could take it for a
    /// killed run's: use this only for outputs that must be reopened. <see cref="Commit"/> and disposal still work.
    /// </summary>
    public void ReleaseForReopen()
    {
        _file.Dispose();
        _released = true;
    }

    /// <summary>
    /// Renames the temporary into place. The target is checked against the inputs again first, since the directory
    /// may have changed while the output was written.
    /// </summary>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_committed, this);
        if (!_released)
        {
            _file.Flush();
        }

        _rules.CheckTarget(Path);
        // Rename while the lock is held, so a concurrent run never takes this temporary for a stale one. Without
        // replacing, the move is link(2) + unlink(2) and fails if the target appeared since the check.
        File.Move(TempPath, Path, overwrite: _rules.AllowReplace);
        _committed = true;
        _file.Dispose();
    }

    /// <summary>Closes the temporary and deletes it unless committed.</summary>
    public void Dispose()
    {
        if (!_committed)
        {
            try
            {
                File.Delete(TempPath);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        _file.Dispose();
    }

    /// <summary>Removes temporaries of <paramref name="name"/> in <paramref name="directory"/> that no live writer holds.</summary>
    public static int RemoveStaleTemporaries(string directory, string name)
    {
        int removed = 0;
        IEnumerable<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(directory, $".{name}.*.tmp");
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }

        foreach (string candidate in candidates)
        {
            try
            {
                // Taking the exclusive lock succeeds only when the writer is gone (a killed run); delete while held.
                using SafeFileHandle h = File.OpenHandle(candidate, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
                File.Delete(candidate);
                removed++;
            }
            catch (IOException)
            {
                // Held by a live writer, or already gone.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return removed;
    }

    /// <summary>The temporary's stream for a writer that disposes what it is given: disposal only flushes.</summary>
    private sealed class NonClosingStream(FileStream inner) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => inner.CanSeek;

        public override bool CanWrite => true;

        public override long Length => inner.Length;

        public override long Position { get => inner.Position; set => inner.Position = value; }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

        public override void SetLength(long value) => inner.SetLength(value);

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);

        public override void WriteByte(byte value) => inner.WriteByte(value);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Flush();
            }

            base.Dispose(disposing);
        }
    }
}
