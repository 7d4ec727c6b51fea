namespace VmState.Machine;

/// <summary>
/// The saved state of the VM's devices: a migration stream's device sections, decoded through its VM description.
/// As a capability of a <c>Vm</c> (<c>vm.TryGet&lt;IDeviceStates&gt;</c>) it is given only when the input has
/// device sections; ELF cores, raw images and a running QEMU have none.
/// </summary>
public interface IDeviceStates
{
    /// <summary>Device sections in stream order.</summary>
    IReadOnlyList<DeviceState> Devices { get; }

    /// <summary>The first device with <paramref name="idStr"/> and <paramref name="instanceId"/>, or null.</summary>
    DeviceState? FindDevice(string idStr, int instanceId = 0);
}
