// Wires chat serving into a silo: the per-silo model host (a DI singleton shared by all chat grains). The grains
// use the "duck" grain storage that AddDuckTraining registers; hosts call both.
using Microsoft.Extensions.DependencyInjection;

namespace Duck.Grains.Chat;

public static class ChatSiloExtensions
{
    public static IServiceCollection AddDuckChatServing(this IServiceCollection services, ChatServingOptions options)
    {
        services.AddSingleton(options);
        services.AddSingleton<ChatModelHost>();
        return services;
    }
}
