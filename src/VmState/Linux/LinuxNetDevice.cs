namespace VmState.Linux;

/// <summary>A network device of the guest kernel (<c>struct net_device</c>).</summary>
/// <param name="Name">Interface name (eth0).</param>
/// <param name="IfIndex">Interface index.</param>
/// <param name="Mac">The address the kernel uses (<c>dev_addr</c>), aa:bb:cc:dd:ee:ff.</param>
/// <param name="PermanentMac">The permanent address (<c>perm_addr</c>).</param>
/// <param name="Flags">IFF_* flags.</param>
/// <param name="Mtu">MTU.</param>
/// <param name="Address">Address of the net_device.</param>
/// <param name="DevAddrAddress">Where the <c>dev_addr</c> bytes are (a pointer in 5.17+, an array before).</param>
/// <param name="PermAddrAddress">Where the <c>perm_addr</c> bytes are.</param>
public sealed record LinuxNetDevice(string Name, int IfIndex, string Mac, string PermanentMac, uint Flags, uint Mtu, ulong Address, ulong DevAddrAddress, ulong PermAddrAddress)
{
    /// <summary>IFF_UP.</summary>
    public bool Up => (Flags & 1) != 0;
}
