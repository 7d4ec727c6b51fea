using VmState.Arch.X86;
using VmState.Editing;
using VmState.Formats.Elf;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests;

/// <summary>
/// The capability interfaces (<see cref="IWritableMemory"/>, <see cref="ISparseMemory"/>, <see cref="IVcpuRegisters"/>,
/// <see cref="IDeviceStates"/>, …): code that tests for them by type does what the capability says, with test doubles
/// and with the library's own implementations. What <see cref="Vm.TryGet{T}"/> gives per input kind is in
/// <see cref="VmTests"/> (files) and the integration VmFrontDoorTests (a running VM).
/// </summary>
public sealed class CapabilityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-capabilities-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>An array of bytes at guest-physical 0; it can be written.</summary>
    private sealed class ArrayMemory(byte[] bytes) : IWritableMemory
    {
        public string Name => "array";

        public IReadOnlyList<MemoryRange> Ranges { get; } = [new MemoryRange(0, (ulong)bytes.Length, "ram")];

        public int Read(ulong address, Span<byte> destination)
        {
            int n = Backed(address, destination.Length);
            bytes.AsSpan((int)Math.Min(address, (ulong)bytes.Length), n).CopyTo(destination);
            return n;
        }

        public int Write(ulong address, ReadOnlySpan<byte> source)
        {
            int n = Backed(address, source.Length);
            source[..n].CopyTo(bytes.AsSpan((int)Math.Min(address, (ulong)bytes.Length)));
            return n;
        }

        private int Backed(ulong address, int length) =>
            address >= (ulong)bytes.Length ? 0 : (int)Math.Min((ulong)length, (ulong)bytes.Length - address);
    }

    /// <summary>Page tables whose physical memory can be written (the builder's own memory).</summary>
    private sealed class WritablePageTables(PageTableBuilder pt) : IWritableMemory
    {
        public string Name => pt.Name;

        public IReadOnlyList<MemoryRange> Ranges => pt.Ranges;

        public int Read(ulong address, Span<byte> destination) => pt.Read(address, destination);

        public int Write(ulong address, ReadOnlySpan<byte> source)
        {
            pt.WritePhysical(address, source);
            return source.Length;
        }
    }

    [Fact]
    public void AnAddressSpaceWritesByVirtualAddressPageByPageUpToTheFirstUnmappedByte()
    {
        var pt = new PageTableBuilder(PagingMode.Level4, memorySize: 1 << 24);
        pt.Map(0x7f00_0000_0000, 0x300000, 0x1000, writable: false); // a read-only page: a debugger writes it anyway
        pt.Map(0x7f00_0000_1000, 0x100000, 0x1000);                   // the next virtual page is elsewhere physically
        var space = new AddressSpace(pt, PagingMode.Level4, pt.Root);
        byte[] data = [.. Enumerable.Range(0, 0x1800).Select(i => (byte)(i * 7))];

        int written = space.Write(0x7f00_0000_0800, data, new WritablePageTables(pt));

        Assert.Equal(0x1800, written);
        byte[] back = new byte[0x800];
        pt.Read(0x300800, back);
        Assert.Equal(data.AsSpan(0, 0x800).ToArray(), back);
        back = new byte[0x1000];
        pt.Read(0x100000, back);
        Assert.Equal(data.AsSpan(0x800, 0x1000).ToArray(), back);
        Assert.Equal(0x800, space.Write(0x7f00_0000_1800, data, new WritablePageTables(pt)));
    }

    /// <summary>Memory full of 0xEE that claims to know every page is zero: whoever trusts the claim reads nothing.</summary>
    private sealed class ClaimsAllZeroMemory(ulong length) : IPhysicalMemory, ISparseMemory
    {
        public int Reads { get; private set; }

        public string Name => "claims-all-zero";

        public IReadOnlyList<MemoryRange> Ranges { get; } = [new MemoryRange(0, length, "ram")];

        public bool IsZero(ulong address, ulong length) => true;

        public int Read(ulong address, Span<byte> destination)
        {
            Reads++;
            int n = (int)Math.Min((ulong)destination.Length, length - Math.Min(address, length));
            destination[..n].Fill(0xEE);
            return n;
        }
    }

    /// <summary>What a caller of the library writes: a patch where memory is writable, a refusal where it is not.</summary>
    private static bool TryPatch(IPhysicalMemory memory, ulong address, byte[] bytes) =>
        memory is IWritableMemory writable && writable.Write(address, bytes) == bytes.Length;

    private static MachineState Machine(IPhysicalMemory memory) =>
        new(new MachineOrigin(MachineOriginKind.RawImage, "double", "test double"), null, memory, [new X86CpuState { Index = 0 }], [], [], [], null);

    [Fact]
    public void CodeThatTestsForWritableMemoryWritesADoubleAndRefusesReadOnlyMemory()
    {
        byte[] ram = new byte[0x2000];
        var writable = new ArrayMemory(ram);
        Assert.True(TryPatch(writable, 0x10, [1, 2, 3]));
        Assert.Equal([1, 2, 3], ram[0x10..0x13]);

        // A write that leaves the backed range stops there, as reads do.
        Assert.Equal(2, writable.Write(0x1FFE, [9, 9, 9, 9]));
        Assert.Equal(0, writable.Write(0x2000, [9]));

        IPhysicalMemory readOnly = new SyntheticMemory([new MemoryRange(0, 0x2000, "ram")], _ => 0);
        Assert.False(readOnly is IWritableMemory);
        Assert.False(TryPatch(readOnly, 0x10, [1, 2, 3]));
    }

    [Fact]
    public void TheCoreWriterTrustsSparseMemoryAndReadsPlainMemory()
    {
        // The double claims every page is zero although it holds 0xEE: the writer asks ISparseMemory and leaves holes.
        var sparse = new ClaimsAllZeroMemory(0x10000);
        string sparseCore = Path.Combine(_dir, "sparse.elf");
        ElfCoreWriter.Write(Machine(sparse), sparseCore, null);
        Assert.Equal(0, sparse.Reads);

        IPhysicalMemory plain = new SyntheticMemory([new MemoryRange(0, 0x10000, "ram")], _ => 0xEE);
        Assert.False(plain is ISparseMemory);
        string plainCore = Path.Combine(_dir, "plain.elf");
        ElfCoreWriter.Write(Machine(plain), plainCore, null);

        using MachineState fromSparse = SnapshotLoader.Open(sparseCore);
        using MachineState fromPlain = SnapshotLoader.Open(plainCore);
        byte[] a = new byte[16];
        byte[] b = new byte[16];
        fromSparse.Memory.ReadExactly(0x8000, a);
        fromPlain.Memory.ReadExactly(0x8000, b);
        Assert.All(a, x => Assert.Equal(0, x));
        Assert.All(b, x => Assert.Equal(0xEE, x));
    }

    [Fact]
    public void ASnapshotEditorsMemoryIsWritableAndItsWritesAreEdits()
    {
        var b = new StreamBuilder().Block("pc.ram", 0x4000).Page("pc.ram", 0x1000, Enumerable.Repeat((byte)7, 4096).ToArray());
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        string path = Path.Combine(_dir, "s.mig");
        File.WriteAllBytes(path, b.Build());
        string edited = Path.Combine(_dir, "edited.mig");
        using (MachineState m = SnapshotLoader.Open(path))
        {
            var editor = new SnapshotEditor(m);
            IPhysicalMemory memory = editor.Memory;
            Assert.False(m.Memory is IWritableMemory);
            Assert.True(TryPatch(memory, 0x1ffe, [0xAA, 0xBB, 0xCC, 0xDD]));

            // Reads through the editor's memory see the edit; the snapshot's own memory does not.
            byte[] seen = new byte[4];
            memory.ReadExactly(0x1ffe, seen);
            Assert.Equal([0xAA, 0xBB, 0xCC, 0xDD], seen);
            m.Memory.ReadExactly(0x1ffe, seen);
            Assert.Equal([7, 7, 0, 0], seen);

            // Past the end of RAM: the backed part is written, the rest is not.
            Assert.Equal(2, editor.Memory.Write(0x3ffe, [1, 2, 3, 4]));
            Assert.Equal(0, editor.Memory.Write(0x4000, [1]));
            Assert.Equal(["wrote 4 bytes at guest-physical 0x1ffe", "wrote 2 bytes at guest-physical 0x3ffe"], editor.Log);
            editor.Save(edited);
        }

        using MachineState after = SnapshotLoader.Open(edited);
        byte[] back = new byte[4];
        after.Memory.ReadExactly(0x1ffe, back);
        Assert.Equal([0xAA, 0xBB, 0xCC, 0xDD], back);
        after.Memory.ReadExactly(0x3ffc, back);
        Assert.Equal([0, 0, 1, 2], back);
    }

    [Fact]
    public void RegistersAndDevicesAreReachedThroughTheirInterfaces()
    {
        var b = new StreamBuilder().Block("pc.ram", 0x4000);
        b.Cpu(0, new ulong[16], rip: 0x1234, cr3: 0);
        b.AddDevice(new StreamBuilder.Device("dev", 0, "dev", 1) { Fields = { StreamBuilder.Field.Int("reg", "uint32", 4, 5) } });
        string path = Path.Combine(_dir, "d.mig");
        File.WriteAllBytes(path, b.Build());
        using MachineState m = SnapshotLoader.Open(path);
        IVcpuRegisters cpus = m;
        IDeviceStates devices = m;
        Assert.Equal(0x1234UL, Assert.Single(cpus.Cpus).Rip);
        Assert.Equal(5UL, devices.FindDevice("dev")?.State?.Field("reg")?.Integer);
        Assert.Null(devices.FindDevice("dev", 1));
    }
}
