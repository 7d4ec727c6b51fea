namespace VmState.Integration.Harness;

/// <summary>
/// A fixture guest whose RAM is a file in /dev/shm (memory-backend-file share=on), for the shared-memory live path:
/// one guest per test class (<c>IClassFixture</c>), removed with its RAM file at the end.
/// </summary>
public sealed class SharedMemoryGuest : IAsyncLifetime
{
    /// <summary>The guest's RAM file.</summary>
    public string RamPath { get; } = $"/dev/shm/vmstate-test-{Guid.NewGuid():N}";

    /// <summary>The running guest.</summary>
    public QemuGuest Guest { get; private set; } = null!;

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        Guest = await QemuGuest.StartAsync(new QemuGuestOptions { SharedMemoryPath = RamPath });
        await Guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (Guest is not null)
        {
            await Guest.DisposeAsync();
        }

        File.Delete(RamPath);
    }
}
