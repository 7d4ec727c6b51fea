using System.Text;
using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>
/// <see cref="DentryPaths.DPath"/> over dentries and mounts planted in the synthetic kernel's memory (layouts as
/// Linux 6.1's <c>struct dentry</c>, <c>struct mount</c>, <c>struct vfsmount</c> and <c>struct path</c> begin):
/// names up to a mount's root, across mount points, and a looping dentry chain.
/// </summary>
public sealed class DentryPathsTests
{
    private const ulong ObjectsPa = 0x7400000;
    private const ulong DParent = 24, DNameLen = 36, DNameName = 40, DentrySize = 48;
    private const ulong MntParent = 16, MntMountpoint = 24, MntVfsmount = 32, MountSize = 56;

    private static readonly Action<BtfWriter> s_fsTypes = w =>
    {
        int u32 = w.Int("unsigned int", 4);
        int u64 = w.Int("long long unsigned int", 8);
        int uc = w.Int("unsigned char", 1);
        int namePtr = w.Ptr(w.Const(uc));
        int hashLen = w.Struct(string.Empty, 8, ("hash", u32, 0, 0), ("len", u32, 32, 0));
        int nameUnion = w.Union(string.Empty, 8, (string.Empty, hashLen, 0, 0), ("hash_len", u64, 0, 0));
        int qstr = w.Struct("qstr", 16, (string.Empty, nameUnion, 0, 0), ("name", namePtr, 64, 0));
        int dentry = w.NextId;
        int dentryPtr = dentry + 1;
        w.Struct("dentry", (uint)DentrySize, ("d_flags", u32, 0, 0), ("d_parent", dentryPtr, (uint)DParent * 8, 0), ("d_name", qstr, 32 * 8, 0));
        Assert.Equal(dentryPtr, w.Ptr(dentry));
        int voidPtr = w.Ptr(0);
        int vfsmount = w.Struct("vfsmount", 24, ("mnt_root", dentryPtr, 0, 0), ("mnt_sb", voidPtr, 64, 0), ("mnt_flags", u32, 128, 0));
        int mount = w.NextId;
        int mountPtr = mount + 1;
        w.Struct("mount", (uint)MountSize, ("mnt_hash", voidPtr, 0, 0), ("mnt_parent", mountPtr, (uint)MntParent * 8, 0),
            ("mnt_mountpoint", dentryPtr, (uint)MntMountpoint * 8, 0), ("mnt", vfsmount, (uint)MntVfsmount * 8, 0));
        Assert.Equal(mountPtr, w.Ptr(mount));
        w.Struct("path", 16, ("mnt", w.Ptr(vfsmount), 0, 0), ("dentry", dentryPtr, 64, 0));
    };

    /// <summary>A root mount with /mnt/data, and a second mount on /mnt/data holding sub/file.txt.</summary>
    private sealed class Tree
    {
        private ulong _next;

        public Tree()
        {
            Linux = new SyntheticLinux(moreTypes: s_fsTypes);
            Kernel = KernelLocator.Locate(Linux.Machine);
            RootMount = Alloc(MountSize);
            Root = Dentry("/", 0);
            Mount(RootMount, RootMount, Root, Root);
            ulong mnt = Dentry("mnt", Root);
            Data = Dentry("data", mnt);
            DataMount = Alloc(MountSize);
            DataRoot = Dentry("/", 0);
            Mount(DataMount, RootMount, Data, DataRoot);
            File = Dentry("file.txt", Dentry("sub", DataRoot));
        }

        public SyntheticLinux Linux { get; }

        public LinuxKernel Kernel { get; }

        public ulong RootMount { get; }

        public ulong Root { get; }

        public ulong Data { get; }

        public ulong DataMount { get; }

        public ulong DataRoot { get; }

        public ulong File { get; }

        /// <summary>A dentry named <paramref name="name"/> under <paramref name="parent"/> (0: its own parent, IS_ROOT).</summary>
        public ulong Dentry(string name, ulong parent)
        {
            ulong d = Alloc(DentrySize);
            ulong text = Alloc(64);
            Linux.WriteVirtual(text, Encoding.UTF8.GetBytes(name + "\0"));
            Linux.WriteU64(d + DParent, parent == 0 ? d : parent);
            Linux.WriteU32(d + DNameLen, (uint)Encoding.UTF8.GetByteCount(name));
            Linux.WriteU64(d + DNameName, text);
            return d;
        }

        public void SetParent(ulong dentry, ulong parent) => Linux.WriteU64(dentry + DParent, parent);

        public string DPath(ulong mount, ulong dentry)
        {
            ulong path = Alloc(16);
            Linux.WriteU64(path, mount + MntVfsmount);
            Linux.WriteU64(path + 8, dentry);
            return Kernel.DPath(Kernel.ObjectAt(path, "struct path"));
        }

        private void Mount(ulong mount, ulong parent, ulong mountpoint, ulong root)
        {
            Linux.WriteU64(mount + MntParent, parent);
            Linux.WriteU64(mount + MntMountpoint, mountpoint);
            Linux.WriteU64(mount + MntVfsmount, root);
        }

        private ulong Alloc(ulong size)
        {
            ulong at = Linux.PageOffsetBase + ObjectsPa + _next;
            _next += (size + 63) & ~63UL;
            return at;
        }
    }

    [Fact]
    public void APathCrossesMountPointsUpToTheRootOfTheMountTree()
    {
        var t = new Tree();

        Assert.Equal("/mnt/data/sub/file.txt", t.DPath(t.DataMount, t.File));
        Assert.Equal("/mnt/data", t.DPath(t.DataMount, t.DataRoot));
        Assert.Equal("/mnt/data", t.DPath(t.RootMount, t.Data));
        Assert.Equal("/", t.DPath(t.RootMount, t.Root));
    }

    [Fact]
    public void MemoryMapsFilePathIsTheSameWalk()
    {
        var t = new Tree();
        ulong path = t.Linux.PageOffsetBase + ObjectsPa + 0x10000;
        t.Linux.WriteU64(path, t.DataMount + MntVfsmount);
        t.Linux.WriteU64(path + 8, t.File);

        Assert.Equal("/mnt/data/sub/file.txt", MemoryMaps.FilePath(t.Kernel, t.Kernel.ObjectAt(path, "struct path")));
    }

    [Fact]
    public void ALoopingDentryChainEndsWithAnError()
    {
        var t = new Tree();
        ulong a = t.Dentry("a", t.Root);
        ulong b = t.Dentry("b", a);
        t.SetParent(a, b);

        KernelDataException e = Assert.Throws<KernelDataException>(() => t.DPath(t.RootMount, b));

        Assert.Equal("dentry chain", e.Structure);
        Assert.Contains("a loop", e.Problem, StringComparison.Ordinal);
    }
}
