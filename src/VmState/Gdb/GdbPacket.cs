namespace VmState.Gdb;

/// <summary>What <see cref="GdbPacketReader"/> found on the wire.</summary>
internal enum GdbPacketKind
{
    /// <summary>A packet whose checksum matched; <see cref="GdbPacket.Payload"/> holds it, escapes removed.</summary>
    Packet,

    /// <summary>A ^C (0x03) outside a packet: the client asks the target to stop.</summary>
    Interrupt,

    /// <summary>A packet whose checksum did not match (or was not two hex digits); the client should resend it.</summary>
    BadChecksum,

    /// <summary>A packet longer than the bound; its bytes were discarded as they arrived.</summary>
    TooLong,

    /// <summary>A packet that ends inside an escape sequence.</summary>
    Malformed,
}

/// <summary>One unit of client traffic.</summary>
/// <param name="Kind">What it is.</param>
/// <param name="Payload">The packet's data (bytes as Latin-1 characters), empty for the other kinds.</param>
internal readonly record struct GdbPacket(GdbPacketKind Kind, string Payload);
