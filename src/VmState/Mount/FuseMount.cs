using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace VmState.Mount;

/// <summary>
/// A <see cref="MountDirectory"/> mounted through libfuse 3 at a directory, served by libfuse's multi-threaded loop on
/// a thread of its own until <see cref="Dispose"/> (or an external <c>umount</c>). Read-only unless started writable,
/// and then only the files that take writes (<see cref="MountFile.Writable"/>) can be opened for writing. Only the
/// mounting user can see into it (no <c>allow_other</c>); the kernel checks permissions (<c>default_permissions</c>);
/// files are 0444 (0644 when writable) and directories 0555, owned by that user. An open file keeps the node it
/// opened (<see cref="MountFile.Open"/>) until it is closed, so a running VM's listing may change under it. Every
/// callback catches every exception and answers <c>-EIO</c>, so a bad guest structure fails one read, never the mount.
/// </summary>
public sealed unsafe partial class FuseMount : IDisposable
{
    private readonly MountDirectory _root;
    private readonly nint _fuse;
    private readonly nint* _operations;
    private readonly nint _args;
    private readonly GCHandle _self;
    private readonly Thread _loop;
    private readonly TaskCompletionSource<int> _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _mountTime = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private readonly uint _uid;
    private readonly uint _gid;
    private readonly bool _writable;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, MountFile> _open = new();
    private long _nextHandle;
    private int _disposed;

    private FuseMount(MountDirectory root, string mountPoint, bool writable)
    {
        _root = root;
        _writable = writable;
        MountPoint = mountPoint;
        _uid = Getuid();
        _gid = Getgid();
        _self = GCHandle.Alloc(this);
        _operations = (nint*)NativeMemory.AllocZeroed((nuint)(FuseNative.OperationCount * sizeof(nint)));
        _operations[FuseNative.OpGetattr] = (nint)(delegate* unmanaged[Cdecl]<byte*, FuseNative.Stat*, nint, int>)&GetAttr;
        _operations[FuseNative.OpOpen] = (nint)(delegate* unmanaged[Cdecl]<byte*, FuseNative.FileInfo*, int>)&Open;
        _operations[FuseNative.OpRead] = (nint)(delegate* unmanaged[Cdecl]<byte*, byte*, nuint, long, FuseNative.FileInfo*, int>)&Read;
        _operations[FuseNative.OpReadlink] = (nint)(delegate* unmanaged[Cdecl]<byte*, byte*, nuint, int>)&ReadLink;
        _operations[FuseNative.OpRelease] = (nint)(delegate* unmanaged[Cdecl]<byte*, FuseNative.FileInfo*, int>)&Release;
        if (writable)
        {
            _operations[FuseNative.OpWrite] = (nint)(delegate* unmanaged[Cdecl]<byte*, byte*, nuint, long, FuseNative.FileInfo*, int>)&Write;
            _operations[FuseNative.OpTruncate] = (nint)(delegate* unmanaged[Cdecl]<byte*, long, nint, int>)&Truncate;
        }

        _operations[FuseNative.OpReaddir] = (nint)(delegate* unmanaged[Cdecl]<byte*, nint, delegate* unmanaged<nint, byte*, FuseNative.Stat*, long, int, int>, long, nint, int, int>)&ReadDir;

        string[] argv = ["vmstate", "-o", (writable ? "rw" : "ro") + ",default_permissions,fsname=vmstate,subtype=vmstate"];
        _args = Marshal.AllocHGlobal(sizeof(FuseNative.Args) + (argv.Length * sizeof(nint)));
        var a = (FuseNative.Args*)_args;
        nint* v = (nint*)(_args + sizeof(FuseNative.Args));
        for (int i = 0; i < argv.Length; i++)
        {
            v[i] = Marshal.StringToCoTaskMemUTF8(argv[i]);
        }

        a->Argc = argv.Length;
        a->Argv = (nint)v;
        a->Allocated = 0;
        _fuse = FuseNative.New(a, _operations, (nuint)(FuseNative.OperationCount * sizeof(nint)), GCHandle.ToIntPtr(_self));
        if (_fuse == 0)
        {
            FreeNative();
            throw new IOException("libfuse refused to create the filesystem (fuse_new failed; see its message above)");
        }

        if (FuseNative.Mount(_fuse, mountPoint) != 0)
        {
            FuseNative.Destroy(_fuse);
            FreeNative();
            throw new IOException($"cannot mount on {mountPoint}: fuse_mount failed (is /dev/fuse usable here, and are you root or is fusermount3 installed?)");
        }

        _loop = new Thread(Loop) { IsBackground = true, Name = "vmstate fuse loop" };
        _loop.Start();
    }

    /// <summary>The directory the view is mounted at (absolute).</summary>
    public string MountPoint { get; }

    /// <summary>Completes when the filesystem is no longer served (unmounted by <see cref="Dispose"/> or from outside).</summary>
    public Task Ended => _ended.Task;

    /// <summary>Whether files that take writes can be opened for writing.</summary>
    public bool Writable => _writable;

    /// <summary>Mounts <paramref name="root"/> read-only at <paramref name="mountPoint"/>, which must be an existing directory that is not already a mount point.</summary>
    /// <exception cref="IOException">The mount point is unusable (missing, not a directory, busy, a dead FUSE mount) or libfuse failed.</exception>
    public static FuseMount Start(MountDirectory root, string mountPoint) => Start(root, mountPoint, writable: false);

    /// <summary>
    /// Mounts <paramref name="root"/> at <paramref name="mountPoint"/>; with <paramref name="writable"/>, the files that
    /// take writes (<see cref="MountFile.Writable"/>) can be written (<c>pwrite</c>, <c>dd conv=notrunc</c>; truncating
    /// is refused).
    /// </summary>
    /// <exception cref="IOException">The mount point is unusable (missing, not a directory, busy, a dead FUSE mount) or libfuse failed.</exception>
    public static FuseMount Start(MountDirectory root, string mountPoint, bool writable)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentException.ThrowIfNullOrEmpty(mountPoint);
        string full = Path.GetFullPath(mountPoint);
        MountPointCheck.Require(full);
        return new FuseMount(root, full, writable);
    }

    /// <summary>Unmounts (if still mounted), waits for the loop to end and frees libfuse's state.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        FuseNative.Exit(_fuse);
        if (!_ended.Task.IsCompleted && FuseNative.Umount2(MountPoint, 0) != 0)
        {
            // Busy (a shell inside it, an open file): detach it, so it disappears once no one uses it.
            _ = FuseNative.Umount2(MountPoint, FuseNative.MntDetach);
        }

        _loop.Join(TimeSpan.FromSeconds(10));
        if (!_loop.IsAlive)
        {
            FuseNative.Unmount(_fuse);
            FuseNative.Destroy(_fuse);
            FreeNative();
        }
    }

    private void Loop()
    {
        int result = -1;
        try
        {
            nint config = FuseNative.LoopConfigCreate();
            try
            {
                FuseNative.LoopConfigSetMaxThreads(config, 8);
                result = FuseNative.LoopMt(_fuse, config);
            }
            finally
            {
                FuseNative.LoopConfigDestroy(config);
            }
        }
        finally
        {
            _ended.TrySetResult(result);
        }
    }

    private void FreeNative()
    {
        var a = (FuseNative.Args*)_args;
        nint* v = (nint*)a->Argv;
        for (int i = 0; i < a->Argc; i++)
        {
            Marshal.FreeCoTaskMem(v[i]);
        }

        Marshal.FreeHGlobal(_args);
        NativeMemory.Free(_operations);
        _self.Free();
    }

    private static FuseMount Current()
    {
        nint context = FuseNative.GetContext();
        nint data = *(nint*)(context + 24);
        return (FuseMount)GCHandle.FromIntPtr(data).Target!;
    }

    /// <summary>The node at a FUSE path ("/", "/a/b"), or null.</summary>
    internal MountNode? Lookup(string path) => Find(_root, path);

    /// <summary>The node at <paramref name="path"/> ("/", "/a/b"; empty parts are skipped) below <paramref name="root"/>, or null.</summary>
    public static MountNode? Find(MountDirectory root, string path)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(path);
        MountNode node = root;
        foreach (string part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (node is not MountDirectory d || d.Find(part) is not MountNode next)
            {
                return null;
            }

            node = next;
        }

        return node;
    }

    private void Fill(MountNode node, FuseNative.Stat* st)
    {
        *st = default;
        st->Uid = _uid;
        st->Gid = _gid;
        st->AtimeSec = st->MtimeSec = st->CtimeSec = _mountTime;
        st->Blksize = 4096;
        if (node is MountFile f)
        {
            st->Mode = FuseNative.SIfReg | (_writable && f.Writable ? 0x1a4u : 0x124u); // 0644 or 0444
            st->Nlink = 1;
            st->Size = f.Size;
            st->Blocks = (f.Size + 511) / 512;
        }
        else if (node is MountLink link)
        {
            st->Mode = FuseNative.SIfLnk | 0x1ff; // 0777, as every symbolic link
            st->Nlink = 1;
            st->Size = Encoding.UTF8.GetByteCount(link.Target);
        }
        else
        {
            st->Mode = FuseNative.SIfDir | 0x16d; // 0555
            st->Nlink = 2;
        }
    }

    private static string PathOf(byte* path) => Marshal.PtrToStringUTF8((nint)path) ?? "/";

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int GetAttr(byte* path, FuseNative.Stat* st, nint fi)
    {
        try
        {
            FuseMount m = Current();
            if (m.Lookup(PathOf(path)) is not MountNode node)
            {
                return -FuseNative.ENOENT;
            }

            m.Fill(node, st);
            return 0;
        }
        catch (Exception)
        {
            return -FuseNative.EIO;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Open(byte* path, FuseNative.FileInfo* fi)
    {
        try
        {
            FuseMount m = Current();
            MountNode? node = m.Lookup(PathOf(path));
            if (node is null)
            {
                return -FuseNative.ENOENT;
            }

            if (node is not MountFile f)
            {
                return -FuseNative.EISDIR;
            }

            if ((fi->Flags & 3) != 0 && !(m._writable && f.Writable))
            {
                // Opened for writing: a read-only mount, or a file that takes no writes.
                return m._writable ? -FuseNative.EACCES : -FuseNative.EROFS;
            }

            MountFile opened = f.Open();
            ulong handle = (ulong)Interlocked.Increment(ref m._nextHandle);
            m._open[handle] = opened;
            fi->Fh = handle;
            fi->Bits |= f.DirectIo ? FuseNative.DirectIo : f.KeepCache ? FuseNative.KeepCache : 0;
            return 0;
        }
        catch (Exception)
        {
            return -FuseNative.EIO;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Read(byte* path, byte* buffer, nuint size, long offset, FuseNative.FileInfo* fi)
    {
        try
        {
            if (Current().OpenFile(path, fi) is not MountFile f)
            {
                return -FuseNative.ENOENT;
            }

            if (offset < 0)
            {
                return -FuseNative.EINVAL;
            }

            var destination = new Span<byte>(buffer, (int)Math.Min(size, (nuint)(1 << 30)));
            int done = 0;
            while (done < destination.Length)
            {
                int n = f.Read(offset + done, destination[done..]);
                if (n <= 0)
                {
                    break;
                }

                done += n;
            }

            return done;
        }
        catch (IOException)
        {
            return -FuseNative.EIO;
        }
        catch (Exception)
        {
            return -FuseNative.EIO;
        }
    }

    /// <summary>The file an open gave (by its handle), else the node at the path.</summary>
    private MountFile? OpenFile(byte* path, FuseNative.FileInfo* fi) =>
        fi is not null && fi->Fh != 0 && _open.TryGetValue(fi->Fh, out MountFile? f) ? f : Lookup(PathOf(path)) as MountFile;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Write(byte* path, byte* buffer, nuint size, long offset, FuseNative.FileInfo* fi)
    {
        try
        {
            if (Current().OpenFile(path, fi) is not MountFile f)
            {
                return -FuseNative.ENOENT;
            }

            if (!f.Writable)
            {
                return -FuseNative.EACCES;
            }

            if (offset < 0)
            {
                return -FuseNative.EINVAL;
            }

            var source = new ReadOnlySpan<byte>(buffer, (int)Math.Min(size, (nuint)(1 << 30)));
            int done = 0;
            while (done < source.Length)
            {
                int n = f.Write(offset + done, source[done..]);
                if (n <= 0)
                {
                    break;
                }

                done += n;
            }

            // Nothing written at all (past the end, a hole): an error, as a write past the end of a device is.
            return done > 0 || source.Length == 0 ? done : -FuseNative.EIO;
        }
        catch (Exception)
        {
            return -FuseNative.EIO;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Truncate(byte* path, long size, nint fi)
    {
        try
        {
            // Memory has the size it has: a truncate to that size (O_TRUNC on a size-0 file) is accepted, others refused.
            return Current().OpenFile(path, (FuseNative.FileInfo*)fi) switch
            {
                null => -FuseNative.ENOENT,
                MountFile f when f.Size == size || (f.DirectIo && size == 0) => 0,
                _ => -FuseNative.EPERM,
            };
        }
        catch (Exception)
        {
            return -FuseNative.EIO;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Release(byte* path, FuseNative.FileInfo* fi)
    {
        try
        {
            Current()._open.TryRemove(fi->Fh, out _);
            return 0;
        }
        catch (Exception)
        {
            return 0;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int ReadLink(byte* path, byte* buffer, nuint size)
    {
        try
        {
            if (Current().Lookup(PathOf(path)) is not MountLink link)
            {
                return -FuseNative.EINVAL;
            }

            // NUL-terminated, cut to the buffer (libfuse's readlink contract).
            byte[] target = Encoding.UTF8.GetBytes(link.Target);
            int n = (int)Math.Min((nuint)target.Length, size - 1);
            target.AsSpan(0, n).CopyTo(new Span<byte>(buffer, n));
            buffer[n] = 0;
            return 0;
        }
        catch (Exception)
        {
            return -FuseNative.EIO;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int ReadDir(byte* path, nint buffer, delegate* unmanaged<nint, byte*, FuseNative.Stat*, long, int, int> filler, long offset, nint fi, int flags)
    {
        try
        {
            MountNode? node = Current().Lookup(PathOf(path));
            if (node is null)
            {
                return -FuseNative.ENOENT;
            }

            if (node is not MountDirectory d)
            {
                return -FuseNative.ENOTDIR;
            }

            Add(buffer, filler, ".");
            Add(buffer, filler, "..");
            foreach (MountNode child in d.Children)
            {
                if (Add(buffer, filler, child.Name) != 0)
                {
                    break;
                }
            }

            return 0;
        }
        catch (Exception)
        {
            return -FuseNative.EIO;
        }
    }

    private static int Add(nint buffer, delegate* unmanaged<nint, byte*, FuseNative.Stat*, long, int, int> filler, string name)
    {
        int count = Encoding.UTF8.GetByteCount(name);
        Span<byte> bytes = count < 1024 ? stackalloc byte[count + 1] : new byte[count + 1];
        Encoding.UTF8.GetBytes(name, bytes);
        bytes[count] = 0;
        fixed (byte* p = bytes)
        {
            return filler(buffer, p, null, 0, 0);
        }
    }

    [LibraryImport("libc", EntryPoint = "getuid")]
    private static partial uint Getuid();

    [LibraryImport("libc", EntryPoint = "getgid")]
    private static partial uint Getgid();
}
