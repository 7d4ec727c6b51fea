using System.Text;
using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Machine;
using VmState.Memory;
using VmState.Mount;
using VmState.Tests.Linux;
using VmState.Tests.Support;

namespace VmState.Tests.Mount;

/// <summary>The mounted view's nodes without FUSE: physical memory as a sparse file, lazy directories, path lookup.</summary>
public class MountTreeTests
{
    private static byte Content(ulong a) => (byte)((a * 7) + 1);

    [Fact]
    public void PhysmemIsGuestPhysicalMemoryWithHolesAsZeros()
    {
        var memory = new SyntheticMemory([new MemoryRange(0, 0xa0000, "low"), new MemoryRange(0x100000, 0x100000, "high")], Content);
        MountRangeFile physmem = VmMountTree.PhysicalMemory(memory);
        Assert.Equal(0x200000, physmem.Size);

        // A read across the end of the first range and into the hole stops at the range's end; the hole reads as zeros.
        byte[] b = new byte[0x100];
        Assert.Equal(0x80, physmem.Read(0xa0000 - 0x80, b));
        Assert.Equal(Enumerable.Range(0, 0x80).Select(i => Content((ulong)(0xa0000 - 0x80 + i))), b[..0x80]);
        b.AsSpan().Fill(0xff);
        Assert.Equal(0x100, physmem.Read(0xb0000, b));
        Assert.All(b, x => Assert.Equal(0, x));
        Assert.Equal(0x10, physmem.Read(0x100000 - 0x10, b));
        Assert.Equal(0x100, physmem.Read(0x100000, b));
        Assert.Equal(Content(0x100000), b[0]);
        Assert.Equal(0, physmem.Read(0x200000, b));
        Assert.Equal(0x10, physmem.Read(0x200000 - 0x10, b));
    }

    [Fact]
    public void DirectoriesAreMadeOnceAndPathsResolve()
    {
        int made = 0;
        var root = new MountDirectory("root", () =>
        {
            made++;
            return [new MountDirectory("a", new MountContentFile("f", () => "hello"u8.ToArray())), new MountContentFile("a", () => [])];
        });
        Assert.Null(FuseMount.Find(root, "/missing"));
        MountContentFile f = Assert.IsType<MountContentFile>(FuseMount.Find(root, "/a/f"));
        Assert.Same(root, FuseMount.Find(root, "/"));
        Assert.Same(f, FuseMount.Find(root, "//a//f/"));
        Assert.Null(FuseMount.Find(root, "/a/f/x"));
        Assert.Single(root.Children); // the later "a" is dropped
        Assert.Equal(1, made);

        byte[] b = new byte[3];
        Assert.Equal(3, f.Read(1, b));
        Assert.Equal("ell"u8.ToArray(), b);
        Assert.Equal(0, f.Read(5, b));
        Assert.Equal(5, f.Size);
        Assert.Throws<ArgumentException>(() => new MountContentFile("a/b", () => []));
        Assert.Throws<ArgumentException>(() => new MountContentFile("..", () => []));
    }
}

/// <summary>The nodes of a running VM's view and of a writable mount, without FUSE.</summary>
public class MountLiveNodeTests
{
    /// <summary>A clock that moves only when told, so that "within the interval" holds however slow the machine is.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }

    [Fact]
    public void ARefreshingDirectoryListsAgainAfterItsIntervalAndKeepsEntriesThatStay()
    {
        int made = 0;
        string[] names = ["1", "2"];
        var clock = new ManualClock();
        var dir = new MountDirectory("proc", () =>
        {
            made++;
            return names.Select(n => (MountNode)new MountDirectory(n, () => []));
        }, TimeSpan.FromMilliseconds(50), clock);
        Assert.True(dir.Refreshes);
        MountNode one = dir.Find("1")!;
        Assert.Equal(["1", "2"], dir.Children.Select(c => c.Name));
        Assert.Equal(1, made); // within the interval: the same listing

        names = ["1", "3"];
        clock.Advance(TimeSpan.FromMilliseconds(49));
        Assert.Equal(["1", "2"], dir.Children.Select(c => c.Name)); // still within the interval
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(["1", "3"], dir.Children.Select(c => c.Name));
        Assert.Equal(2, made);
        Assert.Same(one, dir.Find("1")); // an entry that stayed is the same node
        Assert.Null(dir.Find("2"));

        // Without an interval: listed once, whatever changes.
        var once = new MountDirectory("x", () =>
        {
            made++;
            return names.Select(n => (MountNode)new MountContentFile(n, () => []));
        });
        Assert.Equal(2, once.Children.Count);
        names = [];
        Thread.Sleep(60);
        Assert.Equal(2, once.Children.Count);
        Assert.False(once.Refreshes);
    }

    [Fact]
    public void EachOpenOfARefreshingFileReadsTheContentMadeForIt()
    {
        int version = 0;
        var clock = new ManualClock();
        var file = new MountContentFile("dmesg", () => Encoding.ASCII.GetBytes($"version {++version}\n"), TimeSpan.FromMilliseconds(50), clock);
        Assert.True(file.DirectIo);
        Assert.False(file.KeepCache);
        Assert.Equal(0, file.Size); // nothing made yet: size 0, as /proc's files

        MountFile first = file.Open();
        Assert.Equal("version 1\n", ReadAll(first));
        Assert.Equal("version 1\n", ReadAll(file.Open())); // within the interval: the same rendering
        clock.Advance(TimeSpan.FromMilliseconds(50));
        MountFile second = file.Open();
        Assert.Equal("version 2\n", ReadAll(second));
        Assert.Equal("version 1\n", ReadAll(first)); // an open file keeps its moment
        Assert.Equal(10, file.Size);

        // A snapshot's file: made once, cached by the kernel, the same object at every open.
        var kept = new MountContentFile("ps", () => Encoding.ASCII.GetBytes($"version {++version}\n"));
        Assert.Same(kept, kept.Open());
        Assert.False(kept.DirectIo);
        Assert.True(kept.KeepCache);
        Assert.Throws<NotSupportedException>(() => kept.Write(0, "x"u8));
    }

    [Fact]
    public void AFileMadeAtEachOpenGivesEveryOpenItsOwn()
    {
        int made = 0;
        var file = new MountOpenedFile("core.elf", () =>
        {
            byte[] b = Encoding.ASCII.GetBytes($"core {++made}");
            return new MountRangeFile("core.elf", b.Length, (o, d) => (int)Math.Max(0, Math.Min(d.Length, b.Length - o)) is int n && n > 0 ? Copy(b, o, d, n) : 0);
        }, eachOpen: true);
        Assert.Equal(0, file.Size);
        Assert.True(file.DirectIo);
        Assert.Equal("core 1", ReadAll(file.Open()));
        Assert.Equal("core 2", ReadAll(file.Open()));
        Assert.Equal(6, file.Size);

        var once = new MountOpenedFile("core.elf", () => new MountRangeFile("core.elf", 4, (o, d) => 0), eachOpen: false);
        Assert.Same(once.Open(), once.Open());
        Assert.Equal(4, once.Size);
    }

    [Fact]
    public void PhysmemWritesGoToTheWritableMemoryAndAHoleIsAnError()
    {
        var backing = new byte[0x4000];
        var memory = new ArrayMemory(backing, [new MemoryRange(0x1000, 0x1000, "a"), new MemoryRange(0x3000, 0x1000, "b")]);
        MountRangeFile physmem = VmMountTree.PhysicalMemory(memory, memory, cached: false);
        Assert.True(physmem.Writable);
        Assert.False(physmem.KeepCache);
        Assert.False(physmem.DirectIo);

        // A write across the end of a range stops there (the caller goes on at the hole, which fails).
        Assert.Equal(0x10, physmem.Write(0x1ff0, Enumerable.Repeat((byte)0xab, 0x20).ToArray()));
        Assert.Equal(0xab, backing[0x1ff0]);
        Assert.Throws<IOException>(() => physmem.Write(0x2000, [1]));
        Assert.Throws<IOException>(() => physmem.Write(0x4000, [1]));
        Assert.Equal(4, physmem.Write(0x3000, [1, 2, 3, 4]));
        byte[] read = new byte[4];
        Assert.Equal(4, physmem.Read(0x3000, read));
        Assert.Equal([1, 2, 3, 4], read);

        Assert.False(VmMountTree.PhysicalMemory(memory).Writable);
    }

    [Fact]
    public void TheStreamedCoreIsTheCoreTheWriterWrites()
    {
        var linux = new SyntheticLinux();
        MachineState m = linux.Machine;
        IReadOnlyList<VirtualMapping> aliases = CpuAddressSpaces.KernelMappings(m);
        Assert.NotEmpty(aliases);
        string dir = Directory.CreateTempSubdirectory("vmstate-corev-").FullName;
        try
        {
            string path = Path.Combine(dir, "core.elf");
            ElfCoreWriter.Write(m, path, m.Origin.CarriedVmcoreinfoNote, aliases);
            byte[] written = File.ReadAllBytes(path);
            ElfCoreView view = ElfCoreView.Create(m, m.Origin.CarriedVmcoreinfoNote, aliases);
            Assert.Equal(written.Length, view.Size);

            // Read in odd pieces, as a reader's preads land anywhere: byte for byte the written file.
            byte[] streamed = new byte[view.Size];
            var random = new Random(15);
            long at = 0;
            while (at < streamed.Length)
            {
                int n = view.Read(at, streamed.AsSpan((int)at, (int)Math.Min(random.Next(1, 70000), streamed.Length - at)));
                Assert.True(n > 0, $"no progress at {at}");
                at += n;
            }

            Assert.Equal(written, streamed);
            Assert.Equal(0, view.Read(view.Size, new byte[8]));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static int Copy(byte[] b, long offset, Span<byte> d, int n)
    {
        b.AsSpan((int)offset, n).CopyTo(d);
        return n;
    }

    private static string ReadAll(MountFile f)
    {
        var bytes = new List<byte>();
        byte[] buffer = new byte[3];
        int n;
        while ((n = f.Read(bytes.Count, buffer)) > 0)
        {
            bytes.AddRange(buffer[..n]);
        }

        return Encoding.ASCII.GetString([.. bytes]);
    }

    /// <summary>Writable memory over an array: guest-physical address = index.</summary>
    private sealed class ArrayMemory(byte[] bytes, IReadOnlyList<MemoryRange> ranges) : IWritableMemory
    {
        public string Name => "array";

        public IReadOnlyList<MemoryRange> Ranges => ranges;

        public int Read(ulong address, Span<byte> destination)
        {
            int n = (int)Math.Min((ulong)destination.Length, (ulong)bytes.Length - address);
            bytes.AsSpan((int)address, n).CopyTo(destination);
            return n;
        }

        public int Write(ulong address, ReadOnlySpan<byte> source)
        {
            int n = (int)Math.Min((ulong)source.Length, (ulong)bytes.Length - address);
            source[..n].CopyTo(bytes.AsSpan((int)address));
            return n;
        }
    }
}
