using System.Text;

namespace VmState.Linux;

/// <summary>
/// File paths from dentries and mounts, named after the kernel's <c>d_path</c> (Linux <c>fs/d_path.c</c>; drgn's
/// <c>d_path</c> in <c>drgn/helpers/linux/fs.py</c>), with <c>struct mount</c>, <c>struct vfsmount</c> and
/// <c>struct dentry</c> laid out by the guest's BTF. The walk up the dentry chain is bounded.
/// </summary>
public static class DentryPaths
{
    private const int MaxPathDepth = 4096;

    /// <summary>
    /// <c>d_path</c>: the path of a <c>struct path</c> as <c>fs/d_path.c prepend_path</c> builds it: dentry names up
    /// to each mount's root, then across to the mount point in the parent mount, up to the root of the mount tree.
    /// </summary>
    /// <exception cref="KernelDataException">A dentry chain deeper than 4096 components (a loop), or unreadable memory.</exception>
    public static string DPath(this LinuxKernel kernel, KernelObject path)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(path);
        ulong dentry = path.Member("dentry").ToUInt64();
        ulong vfsmnt = path.Member("mnt").ToUInt64();
        var types = kernel.Types;
        int mountType = types.FindType("struct mount");
        int dentryType = types.FindType("struct dentry");
        ulong mntOffset = types.Member(mountType, "mnt").ByteOffset;
        ulong mntRootOff = types.Member(types.FindType("struct vfsmount"), "mnt_root").ByteOffset;
        ulong mntParentOff = types.Member(mountType, "mnt_parent").ByteOffset;
        ulong mountpointOff = types.Member(mountType, "mnt_mountpoint").ByteOffset;
        ulong parentOff = types.Member(dentryType, "d_parent").ByteOffset;
        ulong nameOff = types.Member(dentryType, "d_name.name").ByteOffset;
        ulong lenOff = types.Member(dentryType, "d_name.len").ByteOffset;
        var parts = new List<string>();
        for (int depth = 0; ; depth++)
        {
            if (depth > MaxPathDepth)
            {
                throw new KernelDataException(dentry, "dentry chain", $"deeper than {MaxPathDepth} components (a loop)");
            }

            ulong mount = vfsmnt - mntOffset;
            if (dentry == kernel.ReadU64(vfsmnt + mntRootOff, "vfsmount.mnt_root"))
            {
                ulong parent = kernel.ReadU64(mount + mntParentOff, "mount.mnt_parent");
                if (parent == mount)
                {
                    break; // the root of the mount tree
                }

                dentry = kernel.ReadU64(mount + mountpointOff, "mount.mnt_mountpoint");
                vfsmnt = parent + mntOffset;
                continue;
            }

            ulong up = kernel.ReadU64(dentry + parentOff, "dentry.d_parent");
            if (up == dentry)
            {
                break; // IS_ROOT: a dentry outside its mount's tree (e.g. a detached one)
            }

            uint len = kernel.ReadU32(dentry + lenOff, "dentry.d_name.len");
            ulong namePtr = kernel.ReadU64(dentry + nameOff, "dentry.d_name.name");
            byte[] bytes = new byte[Math.Min(len, 255u)];
            kernel.ReadExactly(namePtr, bytes, "dentry name");
            parts.Add(Encoding.UTF8.GetString(bytes));
            dentry = up;
        }

        if (parts.Count == 0)
        {
            return "/";
        }

        var sb = new StringBuilder();
        for (int i = parts.Count - 1; i >= 0; i--)
        {
            sb.Append('/').Append(parts[i]);
        }

        return sb.ToString();
    }
}
