namespace VmState.Export;

/// <summary>Writes a file under a temporary name beside it and renames it into place only when complete.</summary>
public static class AtomicFile
{
    /// <summary>Calls <paramref name="write"/> with a stream on a temporary file, then renames it to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        string temp = Formats.Elf.ElfCoreWriter.TempPathFor(path);
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(fs);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            Formats.Elf.ElfCoreWriter.TryDelete(temp);
            throw;
        }
    }
}
