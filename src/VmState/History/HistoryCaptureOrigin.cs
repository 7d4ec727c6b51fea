using VmState.Machine;

namespace VmState.History;

/// <summary>The origin of a machine read from a history store capture (<c>STORE@N</c>).</summary>
/// <param name="Path">The capture's file in the store.</param>
/// <param name="Description">The store and capture, for messages.</param>
/// <param name="StoreDirectory">The store directory.</param>
/// <param name="Capture">The capture.</param>
public record HistoryCaptureOrigin(string Path, string Description, string StoreDirectory, HistoryCapture Capture)
    : MachineOrigin(MachineOriginKind.HistoryCapture, Path, Description);
