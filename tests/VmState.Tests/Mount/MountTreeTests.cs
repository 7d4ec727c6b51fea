using VmState.Memory;
using VmState.Mount;
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
