using System.Buffers.Binary;
using VmState.Export;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.Formats.Qcow2;
using VmState.Formats;
using VmState.Gdb;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Fuzz;

/// <summary>
/// The fuzz targets: each parses hostile bytes the way a command would and touches what it parsed. Expected
/// rejections (<see cref="VmStateFormatException"/>, <see cref="ArgumentException"/> for a missing snapshot) are
/// swallowed; anything else escapes and is a bug.
/// </summary>
public static class Targets
{
    /// <summary>Target names and their entry points.</summary>
    public static readonly IReadOnlyDictionary<string, Action<byte[]>> All = new Dictionary<string, Action<byte[]>>(StringComparer.Ordinal)
    {
        ["stream"] = Stream,
        ["qcow2"] = Qcow2,
        ["elf"] = Elf,
        ["detect"] = Detect,
        ["btf"] = Btf,
        ["kallsyms"] = KallsymsScan,
        ["vmdesc"] = VmDesc,
        ["gdb"] = GdbClient,
        ["extract"] = Extract,
        ["indexcache"] = IndexCacheRecord,
        ["kernelnote"] = KernelLocationNoteBytes,
        ["mount"] = MountRequest,
        ["gdbstub"] = GdbStubReplies,
        ["traceprint"] = TracePrint,
        ["osevents"] = OsEvents,
        ["history"] = HistoryStoreFiles,
        ["indexlog"] = HistoryIndexLog,
        ["replay"] = ReplayManifest,
        ["rrindex"] = ReplayIndexFile,
        ["rrcheckpoints"] = ReplayCheckpointsInfo,
        ["rrfind"] = ReplayFindArguments,
        ["fork"] = ForkCloneDescription,
        ["trigger"] = TriggerPort,
        ["arm64walk"] = Arm64Walk,
        ["arm64btf"] = Arm64ImageBtf,
        ["webparams"] = WebRequestParameters,
        ["gdbarm64"] = GdbClientArm64,
        ["hmparm64"] = HmpArm64Text,
        ["regvalue"] = RegisterValue,
    };

    private static readonly byte[] GdbSnapshot = LoadGdbSnapshot();

    /// <summary>
    /// Most bytes one input may allocate. Inputs are kilobytes; a parser that allocates more than this for one is
    /// driven by a count or size it did not bound, which is a finding even when the machine has the memory.
    /// </summary>
    public const long MaxAllocatedBytesPerInput = 512L << 20;

    /// <summary>Runs <paramref name="target"/> on <paramref name="data"/>, swallowing only expected rejections.</summary>
    /// <remarks>
    /// Also a finding: one input that allocates more than <see cref="MaxAllocatedBytesPerInput"/>, clean rejection
    /// or not (an allocation blow-up that ends in a format error still exhausts a real machine first).
    /// </remarks>
    public static void Run(Action<byte[]> target, byte[] data)
    {
        long before = GC.GetTotalAllocatedBytes(precise: false);
        try
        {
            target(data);
        }
        catch (VmStateFormatException)
        {
        }
        catch (VmState.Linux.KernelDataException)
        {
            // Guest data that does not hold together: the Linux layer's clean rejection.
        }

        long allocated = GC.GetTotalAllocatedBytes(precise: false) - before;
        if (allocated > MaxAllocatedBytesPerInput)
        {
            throw new OutOfMemoryException(
                $"one input of {data.Length} bytes allocated {allocated >> 20} MiB (limit {MaxAllocatedBytesPerInput >> 20} MiB): an unbounded count or size");
        }
    }

    /// <summary>
    /// The AArch64 stage 1 walker: TCR_EL1, TTBR0_EL1, TTBR1_EL1 and a virtual address (8 bytes each, little-endian),
    /// then guest-physical memory from address 0. Translates the address and its neighbours and reads through them;
    /// a granule or address size the walker does not handle is refused with <see cref="NotSupportedException"/>.
    /// </summary>
    private static void Arm64Walk(byte[] data)
    {
        if (data.Length < 32)
        {
            return;
        }

        ReadOnlySpan<byte> d = data;
        ulong tcr = BinaryPrimitives.ReadUInt64LittleEndian(d);
        ulong ttbr0 = BinaryPrimitives.ReadUInt64LittleEndian(d[8..]);
        ulong ttbr1 = BinaryPrimitives.ReadUInt64LittleEndian(d[16..]);
        ulong va = BinaryPrimitives.ReadUInt64LittleEndian(d[24..]);
        var memory = new ByteArrayMemory(data.AsMemory(32));
        VmState.Arch.Arm64.Arm64AddressSpace space;
        try
        {
            space = new VmState.Arch.Arm64.Arm64AddressSpace(memory, tcr, ttbr0, ttbr1);
        }
        catch (NotSupportedException)
        {
            return;
        }

        byte[] buffer = new byte[64];
        foreach (ulong a in new[] { va, va + 0x1000, va ^ (1UL << 55), va | 0xFF00_0000_0000_0000UL, va & 0x00FF_FFFF_FFFF_FFFFUL })
        {
            try
            {
                VmState.Arch.Arm64.Arm64Translation t = space.Translate(a);
                _ = t.Success ? t.Entries[^1].Kind : t.Failure;
                _ = space.Read(a, buffer);
            }
            catch (NotSupportedException)
            {
            }
        }

        // The range walk (procdump, search --pid): 16 MiB from the address, within its half; every range it yields
        // must translate where it says.
        ulong end = va | 0xFF_FFFF;
        if (((va ^ end) >> 55 & 1) == 0)
        {
            try
            {
                foreach (VmState.Arch.Arm64.Arm64Mapping m in space.Mappings(va, end).Take(64))
                {
                    if (m.Size == 0 || !space.TryTranslate(m.VirtualAddress, out ulong pa) || pa != m.PhysicalAddress)
                    {
                        throw new InvalidOperationException($"Mappings yielded 0x{m.VirtualAddress:x} -> 0x{m.PhysicalAddress:x}, which does not translate there");
                    }
                }
            }
            catch (NotSupportedException)
            {
            }
        }
    }

    /// <summary>
    /// A client's side of a GDB connection (as the gdb target) against an AArch64 machine: two vCPUs whose TTBR1_EL1
    /// maps the first 1 GiB of the upper half onto 64 KiB of memory through a level 0 table and a 1 GiB block, so
    /// registers, the aarch64 target description and virtual reads through the arm64 walker are all reached.
    /// </summary>
    private static void GdbClientArm64(byte[] data)
    {
        byte[] ram = new byte[0x10000];
        BinaryPrimitives.WriteUInt64LittleEndian(ram.AsSpan(0x1000), 0x2000UL | 3);            // L0[0] -> L1 table
        BinaryPrimitives.WriteUInt64LittleEndian(ram.AsSpan(0x2000), 0x0UL | (1UL << 10) | 1); // L1[0]: 1 GiB block at 0
        var cpus = new List<VmState.Arch.Arm64.Arm64CpuState>();
        for (int i = 0; i < 2; i++)
        {
            var c = new VmState.Arch.Arm64.Arm64CpuState { Index = i, Pc = 0xffff_0000_0000_0100UL, Pstate = 0x3C5, HasFpSimd = i == 0 };
            c.SetSystemRegister(VmState.Arch.Arm64.Arm64SystemRegisters.TcrEl1.KvmId, 16UL | (16UL << 16) | (2UL << 30));
            c.SetSystemRegister(VmState.Arch.Arm64.Arm64SystemRegisters.Ttbr1El1.KvmId, 0x1000);
            c.SetSystemRegister(VmState.Arch.Arm64.Arm64SystemRegisters.Ttbr0El1.KvmId, 0x3000);
            cpus.Add(c);
        }

        using var m = new MachineState(new MachineOrigin(MachineOriginKind.ElfCore, "fuzz-arm64.elf", "ELF core"), "virt-7.2", new ByteArrayMemory(ram), [], [], [], [], null) { Arm64Cpus = cpus };
        ServeGdbClient(m, data);
    }

    /// <summary>The GDB server over <paramref name="m"/> serving <paramref name="data"/> as one client's bytes; an input starting with '!' meets a server with a token.</summary>
    private static void ServeGdbClient(MachineState m, byte[] data)
    {
        var options = new GdbServerOptions
        {
            Token = data.Length > 0 && data[0] == '!' ? "fuzz" : null,
            IdleTimeout = TimeSpan.FromSeconds(5),
            WriteTimeout = TimeSpan.FromSeconds(5),
        };
        var server = new GdbRemoteServer(m, TextWriter.Null, options);
        using var client = new ClientTraffic(data);
        server.ServeAsync(client, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>
    /// <c>edit --set-reg</c>'s value parser (<see cref="VmState.Editing.SnapshotEditor.ParseRegisterValue"/>, up to 128
    /// bits) and the AArch64 FPSR/FPCR composition that takes its value: an <see cref="ArgumentException"/> or
    /// <see cref="VmState.InvalidEditException"/> is the only rejection; an accepted value must print and parse back
    /// to itself, and a composed FPSCR must hold the new register's bits and keep the other's.
    /// </summary>
    private static void RegisterValue(byte[] data)
    {
        string text = System.Text.Encoding.UTF8.GetString(data);
        UInt128 v;
        try
        {
            v = VmState.Editing.SnapshotEditor.ParseRegisterValue(text, "--set-reg");
        }
        catch (ArgumentException)
        {
            return;
        }

        if (VmState.Editing.SnapshotEditor.ParseRegisterValue($"0x{v:x}", "x") != v || VmState.Editing.SnapshotEditor.ParseRegisterValue(v.ToString(System.Globalization.CultureInfo.InvariantCulture), "x") != v)
        {
            throw new InvalidOperationException($"register value \"{text}\" parsed to 0x{v:x}, which does not parse back to itself");
        }

        if (v > ulong.MaxValue)
        {
            return; // SetRegister refuses it before any register code sees it
        }

        foreach (bool fpsr in (bool[])[true, false])
        {
            uint mask = fpsr ? VmState.Editing.Arm64RegisterFields.FpsrMask : 0x07FF_9F00U;
            uint before = (uint)(v >> 64) ^ 0x5A5A_A5A5U;
            try
            {
                uint after = VmState.Editing.Arm64RegisterFields.ComposeFpscr(before, fpsr, (ulong)v, "fuzz");
                if (v > uint.MaxValue || (after & mask) != (uint)v || (after & ~mask) != (before & ~mask))
                {
                    throw new InvalidOperationException($"FPSCR 0x{before:x8} with {(fpsr ? "FPSR" : "FPCR")} 0x{v:x} composed to 0x{after:x8}");
                }
            }
            catch (VmState.InvalidEditException)
            {
            }
        }
    }

    /// <summary>
    /// QEMU's text about an AArch64 guest, as a running VM's QMP connection gives it: HMP "info registers -a" and the
    /// gdbstub's target-description documents (register numbers, includes). None of the parsers may throw.
    /// </summary>
    private static void HmpArm64Text(byte[] data)
    {
        string text = System.Text.Encoding.UTF8.GetString(data);
        foreach (VmState.Arch.Arm64.Arm64CpuState c in VmState.Live.HmpText.ParseArm64Registers(text))
        {
            _ = c.DescribeMode();
        }

        _ = VmState.Live.Arm64GdbstubRegisters.ParseRegisterNumbers(text);
        _ = VmState.Live.Arm64GdbstubRegisters.ParseIncludes(text);
    }

    /// <summary>Guest-physical memory from address 0 held in an array (the arm64walk target's tables and pages).</summary>
    private sealed class ByteArrayMemory(ReadOnlyMemory<byte> bytes) : IPhysicalMemory
    {
        public string Name => "fuzz";

        public IReadOnlyList<MemoryRange> Ranges => [new MemoryRange(0, (ulong)bytes.Length, "fuzz")];

        public int Read(ulong address, Span<byte> destination)
        {
            if (address >= (ulong)bytes.Length)
            {
                return 0;
            }

            int n = (int)Math.Min((ulong)destination.Length, (ulong)bytes.Length - address);
            bytes.Span.Slice((int)address, n).CopyTo(destination);
            return n;
        }
    }

    private static void Stream(byte[] data)
    {
        using MigrationStream s = MigrationStreamReader.Read(new MemorySource(data));
        using MachineState m = MigrationMachineReader.FromStream(new MigrationStreamOrigin(MachineOriginKind.MigrationStream, "fuzz", "fuzz", s));
        Touch(m);
    }

    /// <summary>
    /// A stream extracted in one pass, as <c>vmstate extract</c> does: its RAM written into a core while it is parsed
    /// (the parser's buffers handed to the writer thread), the VMCOREINFO search over the candidate pages, the core's
    /// headers placed before the data. Needs files: the input and the output set live in a temporary directory.
    /// </summary>
    private static void Extract(byte[] data)
    {
        string dir = Directory.CreateTempSubdirectory("vmstate-fuzz-extract-").FullName;
        try
        {
            string input = Path.Combine(dir, "in.mig");
            File.WriteAllBytes(input, data);
            using MachineExport.Session export = MachineExport.Begin(Path.Combine(dir, "out"), input, xml: false);
            using MachineState m = SnapshotLoader.Open(input, new SnapshotOpenOptions { RamObserver = export.RamObserver });
            (byte[] Note, string How)? note = VmcoreinfoLocator.Find(m, scan: true, export.VmcoreinfoCandidates(m));
            export.Finish(m, new MachineExport.Options(false, note?.Note, []));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void Qcow2(byte[] data)
    {
        using Qcow2Image image = Qcow2Image.Open(new MemorySource(data), ownsSource: false);
        byte[] buffer = new byte[64 * 1024];
        foreach (Qcow2Snapshot s in image.Snapshots)
        {
            if (s.VmStateSize == 0)
            {
                continue;
            }

            using IRandomAccessSource vm = image.OpenVmState(s);
            for (long at = 0; at < Math.Min(vm.Length, 1 << 20); at += buffer.Length)
            {
                vm.Read(at, buffer);
            }
        }
    }

    private static void Elf(byte[] data)
    {
        using MachineState m = ElfCoreReader.Read(new MemorySource(data), "fuzz");
        Touch(m);
    }

    private static void Detect(byte[] data)
    {
        try
        {
            using MachineState m = SnapshotLoader.OpenSource(new MemorySource(data), "fuzz", new SnapshotOpenOptions());
            Touch(m);
        }
        catch (VmStateNotFoundException e) when (e.Kind == VmStateObjectKind.Snapshot)
        {
            // A qcow2 image without the (newest) internal snapshot the loader asks for: a clean rejection, told
            // by its type and kind rather than by its message.
        }
    }

    /// <summary>
    /// The VM description alone: the input is the JSON, optionally followed by a NUL byte and the bytes of a device
    /// section body. Every described device (up to 64) is decoded against that body (or 4 KiB of pattern), as the
    /// stream reader does, sharing one budget; a rejection of one device does not stop the others.
    /// </summary>
    private static void VmDesc(byte[] data)
    {
        int nul = Array.IndexOf(data, (byte)0);
        byte[] json = nul >= 0 ? data[..nul] : data;
        byte[] body = nul >= 0 ? data[(nul + 1)..] : Pattern;
        VmDescription description = VmDescription.Parse(json, 0);
        var source = new MemorySource(body);
        var budget = new DeviceDecodeBudget(ReaderLimits.Default, body.Length);
        foreach (DeviceDescription d in description.Devices.Take(64))
        {
            _ = description.Find(d.Name, d.InstanceId);
            try
            {
                VmState.Machine.VmsdState state = DeviceSectionDecoder.Decode(new SourceCursor(source), d.Vmsd, d.Name, budget);
                _ = state.Fields.Count;
            }
            catch (VmStateFormatException)
            {
            }
        }
    }

    private static readonly byte[] Pattern = [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 7))];

    private static void Btf(byte[] data)
    {
        VmState.Linux.Btf.BtfTypes types = VmState.Linux.Btf.BtfTypes.Parse(data);
        for (int id = 1; id < Math.Min(types.Count, 2000); id++)
        {
            _ = types.TypeName(id);
            try
            {
                _ = types.SizeOf(id);
            }
            catch (ArgumentException)
            {
                // Asking the size of a type that has none (void, functions, forwards): the API's documented answer.
            }
        }

        _ = types.Find("task_struct", VmState.Linux.Btf.BtfKind.Struct);
    }

    private static void Arm64ImageBtf(byte[] data)
    {
        // The search for the vmlinux BTF in an AArch64 kernel image (headers that lie about their sizes, decoys).
        if (VmState.Linux.Arm64KernelLocator.FindBtf(data) is (int at, int size) && (at < 0 || size <= 0 || at + size > data.Length))
        {
            throw new InvalidOperationException($"BTF range {at}+{size} is outside the {data.Length}-byte image");
        }
    }

    private static void KallsymsScan(byte[] data)
    {
        // The structural scan over a kernel image (it must find the tables or say why, never crash or hang).
        VmState.Linux.Kallsyms k = VmState.Linux.Kallsyms.Scan(data, 0xffffffff81000000, true, null, null);
        for (int i = 0; i < Math.Min(k.Count, 100); i++)
        {
            _ = k[i];
        }
    }

    private static void GdbClient(byte[] data)
    {
        // The bytes are a client's whole side of a connection, framing included (so checksums, escapes, run-length
        // marks and garbage between packets are fuzzed too); the replies go nowhere. A fresh machine each time,
        // since register writes change its vCPU state. An input starting with '!' meets a server with a token.
        using MachineState m = MigrationMachineReader.Read(new MemorySource(GdbSnapshot), "fuzz.mig");
        ServeGdbClient(m, data);
    }

    /// <summary>
    /// A RAM index cache record (the part of an entry after its identity fields, which a SHA-256 guards on disk)
    /// decoded for the gdb target's stream and, when it decodes, replayed over that stream: a record that does not
    /// fit must be rejected (<see cref="VmStateFormatException"/>) or found not to match
    /// (<see cref="RamIndexMismatchException"/>, the loader then parses afresh); one that replays is read through.
    /// </summary>
    /// <summary>
    /// A kept kernel location (<c>KernelLocationNote</c>, the payload of an index cache note): decoded, then followed
    /// into <c>gdb-target.mig</c> as <c>KernelLocator.FromNote</c> does (a root where no kernel is must give null).
    /// </summary>
    private static void KernelLocationNoteBytes(byte[] data)
    {
        // The AArch64 note (Arm64KernelLocationNote) is decoded from the same bytes: bounded the same way.
        try
        {
            _ = VmState.Linux.Arm64KernelLocationNote.Decode(data);
        }
        catch (VmStateFormatException)
        {
            // Not an arm64 note: the x86 decoder below has its own say.
        }

        _ = VmState.Linux.KernelLocationNote.Decode(data);
        using MigrationStream stream = MigrationStreamReader.Read(new MemorySource(GdbSnapshot), ReaderLimits.Default, null, ownsSource: false);
        using MachineState m = MigrationMachineReader.FromStream(new MigrationStreamOrigin(MachineOriginKind.MigrationStream, "fuzz", "fuzz", stream));
        _ = VmState.Linux.KernelLocator.FromNote(m, data);
    }

    private static readonly Lazy<(Vm Vm, VmState.Mount.MountDirectory Root)> MountedSnapshot = new(() =>
    {
        string path = Path.Combine(Path.GetTempPath(), $"vmstate-fuzz-mount-{Environment.ProcessId}.mig");
        File.WriteAllBytes(path, GdbSnapshot);
        Vm vm = Vm.Open(path);
        File.Delete(path); // open: the name is no longer needed
        return (vm, VmState.Mount.VmMountTree.Build(vm));
    });

    /// <summary>
    /// What the filesystem view serves for a request: the path (after 8 bytes of offset and 4 of length, UTF-8) looked
    /// up in the tree of <c>gdb-target.mig</c> as the FUSE callbacks do, every directory on the way listed, and a read
    /// of up to 1 MiB at the offset of a file.
    /// </summary>
    private static void MountRequest(byte[] data)
    {
        if (data.Length < 12)
        {
            return;
        }

        long offset = BinaryPrimitives.ReadInt64LittleEndian(data);
        int length = (int)(BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(8)) % (1 << 20));
        string path = System.Text.Encoding.UTF8.GetString(data.AsSpan(12));
        VmState.Mount.MountDirectory root = MountedSnapshot.Value.Root;
        switch (VmState.Mount.FuseMount.Find(root, path))
        {
            case VmState.Mount.MountDirectory d:
                _ = d.Children.Count;
                break;
            case VmState.Mount.MountFile f when offset >= 0:
                try
                {
                    _ = f.Open().Read(offset, new byte[length]);
                }
                catch (IOException)
                {
                    // An unreadable address: the callback's EIO.
                }

                break;
        }
    }

    private static void IndexCacheRecord(byte[] data)
    {
        RamIndexRecord record = RamIndexRecord.Decode(data, GdbSnapshot.Length, ReaderLimits.Default);
        MigrationStream stream;
        try
        {
            stream = MigrationStreamReader.Read(new MemorySource(GdbSnapshot), ReaderLimits.Default, null, ownsSource: false, ram: null, record);
        }
        catch (RamIndexMismatchException)
        {
            return;
        }

        using (stream)
        {
            using MachineState m = MigrationMachineReader.FromStream(new MigrationStreamOrigin(MachineOriginKind.MigrationStream, "fuzz", "fuzz", stream));
            Touch(m);
        }
    }

    /// <summary>
    /// The history store's parsers; the first byte picks one, the rest is its input: 0 a manifest, 1 a capture file
    /// (both past their trailing checksum, which on disk guards them), 2 page index records checked against a manifest
    /// of two packs, 3 a migration stream split front to back as a pipe delivers it (then its frame parsed as the
    /// writer checks it), 4 a capture index file (past its checksum; written back out). Guest RAM is capped at 1 GiB here: a page map costs 8 bytes per page it claims.
    /// </summary>
    /// <summary>
    /// A recording's manifest (<c>recording.json</c>), then the QEMU command line it holds as a replay would read and
    /// rewrite it (<see cref="VmState.Live.QemuArguments"/>, <see cref="VmState.Replay.ReplayCommandLine"/>). A refused
    /// command line is an <see cref="ArgumentException"/>, as the CLI reports it.
    /// </summary>
    private static void ReplayIndexFile(byte[] data)
    {
        VmState.Replay.ReplayIndex index = VmState.Replay.ReplayIndex.Parse(data, "index", checkHash: false);
        VmState.Replay.ReplayIndex again = VmState.Replay.ReplayIndex.Parse(index.Serialize(), "index");
        if (again.Points.Count != index.Points.Count)
        {
            throw new InvalidOperationException("an index file does not read back as written");
        }
    }

    /// <summary>
    /// The checkpoints of a recording as <c>rr find</c>/<c>goto</c> read them: with a first byte below 128,
    /// <c>qemu-img info --output=json</c> of an index's one image (<c>ReplayCheckpoints.ParseInfo</c>), else the rest as
    /// the file names of a checkpoint directory, one per line (<c>ReplayCheckpoints.ParseImageNames</c>). A format error
    /// is the only rejection; the counts accepted are strictly increasing, and every name accepted is the image name of
    /// its count.
    /// </summary>
    private static void ReplayCheckpointsInfo(byte[] data)
    {
        IReadOnlyList<ulong> counts;
        if (data.Length == 0 || data[0] < 128)
        {
            counts = VmState.Replay.ReplayCheckpoints.ParseInfo(data, "snapshots.qcow2");
        }
        else
        {
            string[] names = System.Text.Encoding.UTF8.GetString(data, 1, data.Length - 1).Split('\n');
            counts = VmState.Replay.ReplayCheckpoints.ParseImageNames(names, "checkpoints");
            foreach (ulong c in counts)
            {
                if (!names.Contains(VmState.Replay.ReplayCheckpoints.ImageName(c)))
                {
                    throw new InvalidOperationException($"checkpoint {c} read from no name that is its image's");
                }
            }
        }

        for (int i = 0; i < counts.Count; i++)
        {
            if (i > 0 && counts[i] <= counts[i - 1])
            {
                throw new InvalidOperationException("checkpoint counts out of order");
            }
        }
    }

    /// <summary>
    /// <c>rr find</c>'s option values and <c>rr goto</c>'s <c>@FILE</c> (<c>Cli.Commands.RrArguments</c>, in the CLI
    /// assembly, which <c>eng/fuzz.sh</c> instruments for this target). The first byte picks: 0 an instruction count, 1
    /// <c>--bytes</c> then (after a newline) a <c>--phys</c> range, 2 the same with <c>--virt</c>, 3 <c>--equals</c> then a
    /// <c>--size</c> digit, 4 the bytes as an <c>@FILE</c>. An <see cref="ArgumentException"/> is the only rejection; an
    /// accepted count must read back from its decimal and hex text, a pattern must be 1 to 4096 bytes.
    /// </summary>
    private static void ReplayFindArguments(byte[] data)
    {
        if (data.Length == 0)
        {
            return;
        }

        string text = System.Text.Encoding.UTF8.GetString(data, 1, data.Length - 1);
        string first = text.Split('\n')[0];
        string second = text.Contains('\n') ? text[(text.IndexOf('\n') + 1)..] : string.Empty;
        try
        {
            switch (data[0] % 5)
            {
                case 0:
                    ulong v = Cli.Commands.RrArguments.ParseCount(text, "ICOUNT");
                    CheckArgument(Cli.Commands.RrArguments.ParseCount(v.ToString(System.Globalization.CultureInfo.InvariantCulture), "x") == v
                        && Cli.Commands.RrArguments.ParseCount($"0x{v:x}", "x") == v);
                    break;
                case 1:
                case 2:
                    VmState.Replay.ReplayPredicate p = Cli.Commands.RrArguments.Predicate(null, first, data[0] % 5 == 1 ? second : null, data[0] % 5 == 2 ? second : null, null, 8, null, false);
                    CheckArgument(Cli.Commands.RrArguments.HexBytes(first).Length is >= 1 and <= Cli.Commands.RrArguments.MaxPatternBytes && p.IsBoolean);
                    _ = p.Description;
                    break;
                case 3:
                    int size = second.Length > 0 ? second[0] - '0' : 8;
                    VmState.Replay.ReplayPredicate s = Cli.Commands.RrArguments.Predicate(null, null, null, null, "jiffies", size, first, false);
                    CheckArgument(s.IsBoolean && size is 1 or 2 or 4 or 8);
                    _ = s.Description;
                    break;
                default:
                    _ = Cli.Commands.RrArguments.FindResultCount(data.AsSpan(1), "find.json");
                    break;
            }
        }
        catch (ArgumentException)
        {
        }

        static void CheckArgument(bool ok)
        {
            if (!ok)
            {
                throw new InvalidOperationException("an rr argument was accepted outside its bounds or does not read back");
            }
        }
    }

    private static void ReplayManifest(byte[] data)
    {
        VmState.Replay.ReplayRecording r = VmState.Replay.ReplayRecording.Parse(data, "/recording");
        _ = r.ToJson();
        try
        {
            VmState.Live.QemuArguments user = VmState.Live.QemuArguments.Parse(r.Command);
            VmState.Replay.ReplayCommandLine.Check(user);
            var paths = new VmState.Replay.ReplayRunPaths("/r/replay.bin", "/r/work", "/s/c.sock", "/s/q.sock");
            _ = VmState.Replay.ReplayCommandLine.Build(user, VmState.Replay.ReplayMode.Replay, paths, r.Drives).ToArgv();
        }
        catch (ArgumentException)
        {
        }
    }

    /// <summary>
    /// What a guest writes to its trigger port, read as <c>vmstate agent</c> does: bounded lines, each parsed as a request
    /// (refusals answered); and the same bytes as QEMU's chardev filename the agent connects to.
    /// </summary>
    private static void TriggerPort(byte[] data)
    {
        var reader = new VmState.Live.TriggerLineReader(new MemoryStream(data, writable: false));
        while (true)
        {
            try
            {
                byte[]? line = reader.ReadLineAsync().AsTask().GetAwaiter().GetResult();
                if (line is null)
                {
                    break;
                }

                VmState.Live.TriggerRequest request = VmState.Live.TriggerRequest.Parse(line);
                _ = VmState.Live.TriggerRequest.Ok(request.Nonce, request.Label.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            catch (VmState.Live.TriggerProtocolException e)
            {
                _ = VmState.Live.TriggerRequest.Error(e.Nonce, e.Message);
            }
        }

        _ = VmState.Live.TriggerChannel.UnixServerPath(System.Text.Encoding.UTF8.GetString(data), out _);
    }

    /// <summary>A fork clone's description (<c>clone.json</c>), as <c>vmstate fork --list</c> reads it.</summary>
    /// <summary>
    /// vmstate serve's request parameters (addresses, lengths, ranges, pids, source indexes, hex bytes to write): a
    /// <c>WebRequestException</c> with a 4xx is the only rejection, and what is accepted stays inside its bounds.
    /// </summary>
    private static void WebRequestParameters(byte[] data)
    {
        string text = System.Text.Encoding.UTF8.GetString(data);
        foreach (Action parse in (Action[])[
            () => _ = Cli.Web.WebParameters.Address(text, "addr"),
            () => Check(Cli.Web.WebParameters.Length(text, 256, 1 << 20) is >= 1 and <= 1 << 20),
            () =>
            {
                (ulong start, int length) = Cli.Web.WebParameters.Range(text, 256, 1 << 16);
                Check(length is >= 1 and <= 1 << 16 && start <= ulong.MaxValue - (ulong)length + 1);
            },
            () => Check(Cli.Web.WebParameters.Pid(text) is >= 0 and <= 4_194_304),
            () => Check(Cli.Web.WebParameters.SourceIndex(text, 3) is >= 0 and < 3),
            () => Check(Cli.Web.WebParameters.HexBytes(text).Length is >= 1 and <= Cli.Web.WebParameters.MaxWriteLength),
            () => _ = Cli.Web.WebParameters.IsPhysical(text),
            () => Check(Cli.Web.WebParameters.Symbol(text) is { Length: >= 1 and <= Cli.Web.WebParameters.MaxSymbolText } symbol && symbol.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.')),
            () => Check(!Cli.Web.WebParameters.Shown(text).Any(char.IsControl)),
        ])
        {
            try
            {
                parse();
            }
            catch (Cli.Web.WebRequestException e) when (e.Status is >= 400 and < 500)
            {
            }
        }

        static void Check(bool ok)
        {
            if (!ok)
            {
                throw new InvalidOperationException("a web request parameter was accepted outside its bounds");
            }
        }
    }

    private static void ForkCloneDescription(byte[] data) => _ = VmState.Fork.ForkClone.Parse(data, "/clones/x").ToJson();

    private static void HistoryStoreFiles(byte[] data)
    {
        if (data.Length == 0)
        {
            return;
        }

        ReadOnlySpan<byte> rest = data.AsSpan(1);
        var limits = ReaderLimits.Default with { MaxGuestRam = 1UL << 30 };
        switch (data[0] % 5)
        {
            case 0:
                VmState.History.HistoryManifest m = VmState.History.HistoryManifest.Parse(rest, "manifest", checkHash: false);
                _ = m.Serialize();
                break;
            case 1:
                VmState.History.CaptureFile c = VmState.History.CaptureFile.Parse(rest, "capture", 1 << 20, limits, checkHash: false);
                // The page maps, kept as runs, are written back and read again with every page's entry unchanged.
                VmState.History.CaptureFile again = VmState.History.CaptureFile.Parse(c.Serialize(), "capture", 1 << 20, limits);
                for (int i = 0; i < c.Maps.Count; i++)
                {
                    if (!c.Maps[i].SameEntries(again.Maps[i]))
                    {
                        throw new InvalidOperationException($"block {i}: a page map changed when written back");
                    }
                }

                break;
            case 2:
                var manifest = new VmState.History.HistoryManifest { PackLengths = [1 << 20, 4096], PageCount = 1 << 20 };
                for (int i = 0; i + VmState.History.PageIndex.RecordSize <= rest.Length; i += VmState.History.PageIndex.RecordSize)
                {
                    _ = VmState.History.PageIndex.Read(rest.Slice(i, VmState.History.PageIndex.RecordSize), i / VmState.History.PageIndex.RecordSize, manifest, "pages.idx");
                }

                break;
            case 4:
                VmState.History.HistoryCaptureIndex index = VmState.History.CaptureIndexFile.Parse(rest, "index", checkHash: false);
                _ = VmState.History.CaptureIndexFile.Serialize(index, 4096);
                break;
            default:
                var observer = new DiscardingObserver();
                VmState.History.MigrationStreamSplitter split = VmState.History.MigrationStreamSplitter.Split(new MemoryStream(rest.ToArray(), writable: false), observer, limits);
                using (MigrationStream frame = MigrationStreamReader.Read(new MemorySource(split.Frame), limits))
                {
                    _ = frame.RamBlocks.Count;
                }

                break;
        }
    }

    /// <summary>A history store's combined index file: its records walked, each index file in it parsed (hash not checked, so the fields are reached).</summary>
    private static void HistoryIndexLog(byte[] data)
    {
        Dictionary<int, (int Offset, int Length)> records = VmState.History.CaptureIndexLog.Scan(data, "indexes", out int valid);
        if (valid > data.Length)
        {
            throw new InvalidOperationException($"valid length {valid} past the end {data.Length}");
        }

        foreach ((int number, (int offset, int length)) in records)
        {
            if (offset < VmState.History.CaptureIndexLog.HeaderSize || offset + length > valid)
            {
                throw new InvalidOperationException($"record {number} at {offset}+{length} outside the valid {valid} bytes");
            }

            try
            {
                VmState.History.HistoryCaptureIndex index = VmState.History.CaptureIndexFile.Parse(data.AsSpan(offset, length), $"indexes capture {number}", checkHash: false);
                _ = VmState.History.CaptureIndexFile.Serialize(index, 4096);
            }
            catch (VmStateFormatException)
            {
                // One bad record is rejected on its own; the others are still read.
            }
        }
    }

    /// <summary>Takes page records and drops them, touching their bytes.</summary>
    private sealed class DiscardingObserver : IRamStreamObserver
    {
        private int _sum;

        public void BlockList(IReadOnlyList<(string Name, ulong Length)> blocks, int pageSize) => _sum += blocks.Count;

        public void Page(int block, ulong offset, ReadOnlyMemory<byte> data) => _sum += data.Span[0];

        public void Fill(int block, ulong offset, byte value, bool replaces) => _sum += value;

        public byte[] ExchangeBuffer(byte[] full) => full;
    }

    private static void GdbStubReplies(byte[] data)
    {
        // The bytes are QEMU's side of a trace session's connection: every packet framed out of them goes through the
        // parsers the session applies to what a stub sends (stop reply, g reply), and its text through the stub
        // chardev parser. None of them may throw.
        ReadOnlySpan<byte> rest = data;
        while (!rest.IsEmpty)
        {
            int found = VmState.Events.GdbPacketFraming.TryTake(rest, out string? payload, out int consumed);
            if (consumed == 0 && found == 0)
            {
                break;
            }

            rest = rest[consumed..];
            if (payload is not null)
            {
                _ = VmState.Events.GdbStopReply.TryParse(payload, out _);
                _ = VmState.Events.X86GdbRegisters.TryParse(payload, out _);
                _ = VmState.Live.GdbStubChardev.TryParse(payload, out _);
            }
        }
    }

    private static void TracePrint(byte[] data)
    {
        // User input of vmstate trace --print (a FormatException is its only rejection), the escaping of guest
        // strings, and the no-op decoder that decides whether a breakpoint is stepped over by moving RIP.
        try
        {
            _ = VmState.Events.TracePrintSpec.Parse(System.Text.Encoding.UTF8.GetString(data));
        }
        catch (FormatException)
        {
        }

        string escaped = VmState.Events.TracePrintSpec.Escape(data);
        if (escaped.Any(c => c is < ' ' or > '~'))
        {
            throw new InvalidOperationException("an escaped guest string kept a control or non-ASCII character");
        }

        int skip = VmState.Events.GdbTraceSession.NoopLength(data);
        if (skip < 0 || skip > Math.Min(data.Length, 9))
        {
            throw new InvalidOperationException($"no-op length {skip} for {data.Length} bytes");
        }
    }

    // Lazy: built in the static constructor, this instrumented library code ran before SharpFuzz had mapped AFL's
    // coverage map, and every target's fork server died with an access violation before its first input.
    private static readonly Lazy<VmState.Linux.Kallsyms> OsEventSymbols = new(() => VmState.Linux.Kallsyms.FromList(
        [
            ("__x64_sys_read", 'T', 0xffffffff81000100),
            ("__x64_sys_write", 'T', 0xffffffff81000200),
            ("ksys_write", 'T', 0xffffffff81000200),
            ("__x64_sys_ni_syscall", 'T', 0xffffffff81000300),
            ("sys_call_table", 'D', 0xffffffff82000000),
        ],
        "fuzz"));

    private static void OsEvents(byte[] data)
    {
        // Guest bytes the typed trace events decode: the argument strings of an exec (first 4 bytes: argc, as
        // linux_binprm.argc says; the rest: the strings at bprm->p) and sys_call_table's pointers.
        if (data.Length >= 4)
        {
            int argc = BitConverter.ToInt32(data, 0);
            (List<byte[]> argv, bool truncated) = VmState.Events.ExecTracer.SplitArguments(data.AsSpan(4), argc);
            if (argv.Count > Math.Min(Math.Max(argc, 0), VmState.Events.ExecTracer.MaxArgs) || truncated != (argv.Count < argc))
            {
                throw new InvalidOperationException($"{argv.Count} arguments (truncated {truncated}) for argc {argc}");
            }
        }

        ulong[] entries = new ulong[data.Length / 8];
        Buffer.BlockCopy(data, 0, entries, 0, entries.Length * 8);
        VmState.Events.SyscallTable table = VmState.Events.SyscallTable.FromEntries(entries, OsEventSymbols.Value);
        if (table.Count < 1 || table.Count > entries.Length)
        {
            throw new InvalidOperationException($"a table of {table.Count} entries from {entries.Length} pointers");
        }
    }

    private static byte[] LoadGdbSnapshot()
    {
        using System.IO.Stream s = typeof(Targets).Assembly.GetManifestResourceStream("gdb-target.mig")!;
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    /// <summary>One side of a duplex connection: reads give the client's bytes, then end of stream; writes are dropped.</summary>
    private sealed class ClientTraffic(byte[] input) : System.IO.Stream
    {
        private readonly MemoryStream _input = new(input, writable: false);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => _input.Read(buffer, offset, count);

        // Synchronous completions: Stream's defaults would run each call on the thread pool.
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(_input.Read(buffer.Span));

        public override void Write(byte[] buffer, int offset, int count)
        {
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            _input.Dispose();
            base.Dispose(disposing);
        }
    }

    private static void Touch(MachineState m)
    {
        byte[] buffer = new byte[8192];
        foreach (MemoryRange r in m.Memory.Ranges.Take(64))
        {
            m.Memory.Read(r.Start, buffer);
            m.Memory.Read(r.Start + (r.Length / 2), buffer);
        }

        HardwareJsonWriter.Write(m, System.IO.Stream.Null);
        _ = VmcoreinfoLocator.Find(m, scan: false);
        foreach (var cpu in m.Cpus.Take(4))
        {
            var space = VmState.Arch.X86.AddressSpace.Of(m.Memory, cpu);
            _ = space.Translate(cpu.Rip);
            _ = space.Mappings().Take(1000).Count();
        }
    }
}
