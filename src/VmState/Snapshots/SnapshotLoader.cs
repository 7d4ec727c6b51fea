using System.Buffers.Binary;
using VmState.Formats;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.Formats.Qcow2;
using VmState.Formats.Raw;
using VmState.IO;
using VmState.Machine;

namespace VmState.Snapshots;

/// <summary>
/// Opens any supported input into a <see cref="MachineState"/>, recognising it by its first bytes: a migration
/// stream ("QEVM"), a <c>virsh save</c> file ("LibvirtQemudSave" header, then a stream), a qcow2 image with
/// internal snapshots, an ELF core, or (when allowed) a raw memory image.
/// </summary>
public static class SnapshotLoader
{
    private static readonly byte[] s_libvirtMagic = "LibvirtQemudSave"u8.ToArray();
    private static readonly byte[] s_libvirtPartialMagic = "LibvirtQemudPart"u8.ToArray();

    /// <summary>
    /// Opens <paramref name="path"/>; the returned state keeps the file open until disposed. Its
    /// <see cref="MachineState.Origin"/> says which kind of input it was.
    /// </summary>
    public static MachineState Open(string path, SnapshotOpenOptions? options = null)
    {
        options ??= new SnapshotOpenOptions();
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"no such file: {path}", path);
        }

        IRandomAccessSource file = options.CacheReads ? new CachedFileSource(path) : new FileSource(path);
        try
        {
            // Every file gets its key: small streams keep no RAM index, but do keep notes (the kernel's location).
            IndexCacheFileKey? key = options.IndexCache is not null ? IndexCacheFileKey.Of(path, file) : null;
            return OpenSource(file, path, options, key);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Opens an already opened source (it is owned by the returned state).</summary>
    public static MachineState OpenSource(IRandomAccessSource file, string path, SnapshotOpenOptions options) =>
        OpenSource(file, path, options, key: null);

    private static MachineState OpenSource(IRandomAccessSource file, string path, SnapshotOpenOptions options, IndexCacheFileKey? key)
    {
        ArgumentNullException.ThrowIfNull(options);
        switch (Recognize(file, path, options.AllowRaw))
        {
            case MachineOriginKind.MigrationStream:
                return ReadStream(file, stream => new MigrationStreamOrigin(MachineOriginKind.MigrationStream, path, "migration stream", stream), path, options, key, "stream");
            case MachineOriginKind.VirshSave:
                return OpenLibvirtSave(file, path, options, key);
            case MachineOriginKind.Qcow2Snapshot:
                Qcow2Image image = Qcow2Image.Open(file, ownsSource: true);
                Qcow2Snapshot snapshot = PickSnapshot(image, options.Snapshot, path);
                IRandomAccessSource vmstate = image.OpenVmState(snapshot);
                var owner = new WindowSource(vmstate, 0, vmstate.Length, ownsInner: true);
                return ReadStream(new OwningSource(owner, image), stream => new Qcow2SnapshotOrigin(path, stream, snapshot.Id, snapshot.Name), path, options, key, $"qcow2 snapshot {snapshot.Id} {snapshot.Name}");
            case MachineOriginKind.ElfCore:
                return ElfCoreReader.Read(file, path, options.Limits);
            default:
                return RawImageReader.Read(file, path);
        }
    }

    /// <summary>
    /// Opens the migration stream inside <paramref name="path"/> without parsing it: the file itself, the stream after a
    /// <c>virsh save</c> header, or the vmstate of a qcow2 internal snapshot (<paramref name="snapshot"/> by id or name,
    /// the newest when null). Returns the bytes (owned by the caller), what they are, and the snapshot's date when the
    /// input records one. For readers that consume a stream front to back (the history store).
    /// </summary>
    /// <exception cref="VmStateFormatException">The input holds no migration stream (an ELF core, a raw image).</exception>
    public static (IRandomAccessSource Stream, string Description, DateTimeOffset? Date) OpenStreamBytes(string path, string? snapshot = null)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"no such file: {path}", path);
        }

        IRandomAccessSource file = new FileSource(path);
        try
        {
            switch (Recognize(file, path, allowRaw: false))
            {
                case MachineOriginKind.MigrationStream:
                    return (file, "migration stream", null);
                case MachineOriginKind.VirshSave:
                    long start = LibvirtStreamStart(file);
                    return (new WindowSource(file, start, file.Length - start, ownsInner: true), "virsh save file", null);
                case MachineOriginKind.Qcow2Snapshot:
                    Qcow2Image image = Qcow2Image.Open(file, ownsSource: true);
                    Qcow2Snapshot picked = PickSnapshot(image, snapshot, path);
                    IRandomAccessSource vmstate = image.OpenVmState(picked);
                    return (new OwningSource(new WindowSource(vmstate, 0, vmstate.Length, ownsInner: true), image), $"qcow2 snapshot {picked.Id} \"{picked.Name}\"", picked.Date);
                default:
                    throw new VmStateFormatException(0, "input", $"{path} is an ELF core, which holds no migration stream (device state and vCPUs as QEMU saves them)");
            }
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Recognises an input by its first bytes. Anything unrecognised is a <see cref="MachineOriginKind.RawImage"/>
    /// when <paramref name="allowRaw"/> is set, else an error. Never <see cref="MachineOriginKind.LiveQemu"/>.
    /// </summary>
    /// <exception cref="VmStateFormatException">No known magic and <paramref name="allowRaw"/> is false.</exception>
    public static MachineOriginKind Recognize(IRandomAccessSource file, string path, bool allowRaw)
    {
        ArgumentNullException.ThrowIfNull(file);
        byte[] head = new byte[16];
        int n = file.Read(0, head);
        if (n >= 4 && BinaryPrimitives.ReadUInt32BigEndian(head) == MigrationStreamReader.Magic)
        {
            return MachineOriginKind.MigrationStream;
        }

        if (n == 16 && (head.AsSpan().SequenceEqual(s_libvirtMagic) || head.AsSpan().SequenceEqual(s_libvirtPartialMagic)))
        {
            return MachineOriginKind.VirshSave;
        }

        if (Qcow2Image.IsQcow2(file))
        {
            return MachineOriginKind.Qcow2Snapshot;
        }

        if (ElfCoreReader.IsElf(file))
        {
            return MachineOriginKind.ElfCore;
        }

        if (allowRaw)
        {
            return MachineOriginKind.RawImage;
        }

        throw new VmStateFormatException(0, "input", $"{path} is not a QEMU migration stream (QEVM), virsh save file, qcow2 image or ELF core; first bytes {Convert.ToHexString(head.AsSpan(0, Math.Max(n, 0)))}; use --raw for a raw memory image");
    }

    /// <summary>The snapshot named by <paramref name="idOrName"/>, or the newest one when null.</summary>
    public static Qcow2Snapshot PickSnapshot(Qcow2Image image, string? idOrName, string path)
    {
        if (image.Snapshots.Count == 0)
        {
            throw new VmStateFormatException(60, "qcow2 header", $"{path} has no internal snapshots (create one with savevm)");
        }

        if (idOrName is null)
        {
            Qcow2Snapshot newest = image.Snapshots[0];
            foreach (Qcow2Snapshot s in image.Snapshots)
            {
                if (s.Date >= newest.Date)
                {
                    newest = s;
                }
            }

            return newest;
        }

        return image.Find(idOrName) ?? throw new VmStateNotFoundException(VmStateObjectKind.Snapshot, idOrName,
            $"{path} has no snapshot with id or name \"{idOrName}\"; it has: {string.Join(", ", image.Snapshots.Select(s => $"{s.Id} \"{s.Name}\""))}");
    }

    /// <summary>
    /// Parses the stream in <paramref name="source"/> (owned by the result), through the index cache when
    /// <paramref name="key"/> is set: a cached RAM index that fits is replayed, else the stream is parsed afresh and
    /// its index stored (when the file did not change during the parse). <paramref name="streamKey"/> says which
    /// stream of the file it is.
    /// </summary>
    private static MachineState ReadStream(IRandomAccessSource source, Func<MigrationStream, MigrationStreamOrigin> origin, string path, SnapshotOpenOptions options, IndexCacheFileKey? key, string streamKey)
    {
        IndexCache? cache = options.IndexCache;
        if (cache is null || key is not { } k)
        {
            return MigrationMachineReader.Read(source, origin, options.Limits, options.Progress, options.MainRam, options.RamObserver);
        }

        if (source.Length < cache.MinimumStreamBytes)
        {
            // Parsed afresh (cheap at this size), no RAM index kept; the notes still spare a later run the kernel search.
            MachineState small = MigrationMachineReader.Read(source, origin, options.Limits, options.Progress, options.MainRam, options.RamObserver);
            small.Notes = new IndexCacheNotes(cache, k, streamKey, source.Length, path);
            return small;
        }

        // A RAM observer (extract's single pass) must see every page record, so a cached index, which skips them,
        // is not used then; the fresh parse still leaves an entry for later commands.
        ReaderLimits limits = options.Limits ?? ReaderLimits.Default;
        string why = "not used: this job reads every page record while the stream is parsed";
        RamIndexRecord? cached = options.RamObserver is null ? IndexCacheEntry.TryLoad(cache, k, streamKey, source.Length, limits, out why) : null;
        if (cached is not null)
        {
            try
            {
                MachineState hit = MigrationMachineReader.Read(source, origin, options.Limits, options.Progress, options.MainRam, ram: null, cached);
                hit.Notes = new IndexCacheNotes(cache, k, streamKey, source.Length, path);
                cache.Report?.Invoke("hit");
                return hit;
            }
            catch (RamIndexMismatchException e)
            {
                why = e.Message;
            }
        }

        MachineState state = MigrationMachineReader.Read(source, origin, options.Limits, options.Progress, options.MainRam, options.RamObserver);
        if (state.Origin is MigrationStreamOrigin { Stream: { } stream } && k.StillDescribes(path))
        {
            IndexCacheEntry.TryStore(cache, k, streamKey, stream, out string written);
            why += "; " + written;
            state.Notes = new IndexCacheNotes(cache, k, streamKey, source.Length, path);
        }
        else
        {
            why += "; not written: the file changed while it was read";
        }

        cache.Report?.Invoke(why);
        return state;
    }

    private static MachineState OpenLibvirtSave(IRandomAccessSource file, string path, SnapshotOpenOptions options, IndexCacheFileKey? key)
    {
        string xml = LibvirtDomainXml(file);
        (long dataStart, uint compressed) = LibvirtHeader(file);
        if (compressed != 0)
        {
            // libvirt piped the stream through a compressor (qemu.conf save_image_format): it is decompressed with the
            // same program into an unnamed temporary file, which the machine reads and owns.
            string program = LibvirtCompressor(compressed);
            IRandomAccessSource plain = DecompressToTemporary(file, dataStart, program, path);
            file.Dispose();
            return ReadStream(plain, stream => new LibvirtSaveOrigin(MachineOriginKind.VirshSave, path, $"virsh save file ({program}-compressed)", stream, xml), path, options, key: null, $"virsh save stream decompressed with {program}");
        }

        long start = LibvirtStreamStart(file);
        var window = new WindowSource(file, start, file.Length - start, ownsInner: true);
        return ReadStream(window, stream => new LibvirtSaveOrigin(MachineOriginKind.VirshSave, path, "virsh save file", stream, xml), path, options, key, $"virsh save stream at {start}");
    }

    /// <summary>The program behind libvirt's <c>virQEMUSaveFormat</c> value (src/qemu/qemu_saveimage.h).</summary>
    private static string LibvirtCompressor(uint format) => format switch
    {
        1 => "gzip",
        2 => "bzip2",
        3 => "xz",
        4 => "lzop",
        5 => "zstd",
        _ => throw new VmStateFormatException(28, "virsh save header", $"unknown compression format {format} (libvirt knows raw 0, gzip 1, bzip2 2, xz 3, lzop 4, zstd 5)"),
    };

    /// <summary>
    /// Runs <c>PROGRAM -dc</c> over the bytes from <paramref name="start"/> to the end of <paramref name="file"/> into a
    /// temporary file that is unlinked at once (owner-only while it has a name), and returns it as a source.
    /// </summary>
    private static IRandomAccessSource DecompressToTemporary(IRandomAccessSource file, long start, string program, string path)
    {
        string temp = Path.Combine(Path.GetTempPath(), $"vmstate-{Guid.NewGuid():N}.mig");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.None, BufferSize = 1 << 20 };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        var plain = new FileStream(temp, options);
        try
        {
            File.Delete(temp);
            var psi = new System.Diagnostics.ProcessStartInfo(program) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add("-dc");
            System.Diagnostics.Process process;
            try
            {
                process = System.Diagnostics.Process.Start(psi) ?? throw new IOException($"cannot start {program}");
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new IOException($"{path} is a {program}-compressed libvirt save image and {program} is not installed (it decompresses it)", e);
            }

            using (process)
            {
                Task<string> errors = process.StandardError.ReadToEndAsync();
                Task feed = Task.Run(() =>
                {
                    byte[] buffer = new byte[1 << 20];
                    try
                    {
                        using Stream input = process.StandardInput.BaseStream;
                        for (long at = start; at < file.Length;)
                        {
                            int n = file.Read(at, buffer.AsSpan(0, (int)Math.Min(buffer.Length, file.Length - at)));
                            if (n <= 0)
                            {
                                break;
                            }

                            input.Write(buffer, 0, n);
                            at += n;
                        }
                    }
                    catch (IOException)
                    {
                        // The program stopped reading (corrupt data): its exit status says why.
                    }
                });
                process.StandardOutput.BaseStream.CopyTo(plain, 1 << 20);
                plain.Flush();

                feed.GetAwaiter().GetResult();
                process.WaitForExit();
                if (process.ExitCode != 0)
                {
                    throw new VmStateFormatException(start, "virsh save image", $"{program} -dc failed on the compressed stream (exit {process.ExitCode}): {errors.GetAwaiter().GetResult().Trim()}");
                }
            }

            var source = new FileSource(plain.SafeFileHandle, $"{path} ({program}-decompressed)");
            byte[] magic = new byte[4];
            if (source.Read(0, magic) != 4 || BinaryPrimitives.ReadUInt32BigEndian(magic) != MigrationStreamReader.Magic)
            {
                throw new VmStateFormatException(start, "virsh save image", $"the {program}-decompressed data is not a QEVM migration stream");
            }

            return new OwningSource(source, plain);
        }
        catch
        {
            plain.Dispose();
            throw;
        }
    }

    /// <summary>The domain XML of a libvirt save image: from the end of the header to its NUL (or the cookie).</summary>
    private static string LibvirtDomainXml(IRandomAccessSource file)
    {
        const string S = "virsh save header";
        const int MaxXml = 16 << 20;
        byte[] h = new byte[92];
        file.Read(0, h);
        uint dataLength = BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(20));
        uint cookieOffset = BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(32));
        uint xmlSpan = cookieOffset != 0 && cookieOffset < dataLength ? cookieOffset : dataLength;
        if (xmlSpan > MaxXml)
        {
            throw new VmStateFormatException(20, S, $"the domain XML would be {xmlSpan} bytes; at most {MaxXml} are read");
        }

        byte[] xml = new byte[xmlSpan];
        int n = file.Read(92, xml);
        int end = Array.IndexOf(xml, (byte)0, 0, n);
        return System.Text.Encoding.UTF8.GetString(xml, 0, end < 0 ? n : end);
    }

    /// <summary>Where the data after a libvirt save image's header and XML starts, and its compression format.</summary>
    private static (long DataStart, uint Compressed) LibvirtHeader(IRandomAccessSource file)
    {
        const string S = "virsh save header";
        byte[] h = new byte[92];
        if (file.Read(0, h) != h.Length)
        {
            throw new VmStateFormatException(0, S, "truncated: 92 bytes expected");
        }

        long start = 92L + BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(20));
        if (start > file.Length)
        {
            throw new VmStateFormatException(20, S, $"data_len {start - 92} points past the end of the file");
        }

        return (start, BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(28)));
    }

    /// <summary>Where the migration stream of a <c>virsh save</c> file starts.</summary>
    private static long LibvirtStreamStart(IRandomAccessSource file)
    {
        // libvirt src/qemu/qemu_saveimage.h virQEMUSaveHeader: magic[16], then u32 version, data_len, was_running,
        // compressed, cookieOffset, unused[14], in host (little-endian) order; the domain XML follows, then the stream.
        const string S = "virsh save header";
        byte[] h = new byte[92];
        if (file.Read(0, h) != h.Length)
        {
            throw new VmStateFormatException(0, S, "truncated: 92 bytes expected");
        }

        uint dataLength = BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(20));
        uint compressed = BinaryPrimitives.ReadUInt32LittleEndian(h.AsSpan(28));
        if (compressed != 0)
        {
            throw new VmStateFormatException(28, S, $"the stream is compressed (format {compressed}); it can be read, not edited: save with save_image_format = \"raw\" to edit it");
        }

        long start = 92L + dataLength;
        if (start + 8 > file.Length)
        {
            throw new VmStateFormatException(20, S, $"data_len {dataLength} points past the end of the file");
        }

        byte[] magic = new byte[4];
        file.Read(start, magic);
        if (BinaryPrimitives.ReadUInt32BigEndian(magic) != MigrationStreamReader.Magic)
        {
            throw new VmStateFormatException(start, S, "no QEVM stream after the header and domain XML");
        }

        return start;
    }

    /// <summary>A source that also disposes another object (the qcow2 image behind a vmstate window).</summary>
    private sealed class OwningSource(IRandomAccessSource inner, IDisposable owned) : IRandomAccessSource
    {
        public long Length => inner.Length;

        public string Name => inner.Name;

        public int Read(long offset, Span<byte> destination) => inner.Read(offset, destination);

        public void Dispose()
        {
            inner.Dispose();
            owned.Dispose();
        }
    }
}
