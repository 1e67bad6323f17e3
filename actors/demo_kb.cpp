#include "actors/demo_kb.hpp"

namespace karvon::actors {

const std::vector<demo_document>& demo_documents() {
  static const std::vector<demo_document> docs = {
      // -- delivery --
      {"delivery", "uz", "Yetkazib berish",
       "Buyurtmalar Toshkent bo'ylab bir kun ichida yetkazib beriladi. "
       "Viloyatlarga yetkazib berish uch kungacha davom etadi. 300 000 "
       "so'mdan ortiq buyurtmalar uchun yetkazib berish bepul, undan kam "
       "bo'lsa kuryer xizmati 20 000 so'm turadi.\n\nKuryer kelishidan bir "
       "soat oldin sizga qo'ng'iroq qiladi."},
      {"delivery", "ru", "Доставка",
       "Заказы по Ташкенту доставляются в течение одного дня. Доставка в "
       "регионы занимает до трёх дней. Для заказов дороже 300 000 сумов "
       "доставка бесплатная, иначе курьерская служба стоит 20 000 сумов.\n\n"
       "Курьер звонит за час до приезда."},
      {"delivery", "en", "Delivery",
       "Orders within Tashkent are delivered in one day. Shipping to the "
       "regions takes up to three days. Delivery is free for orders over "
       "300,000 sum; otherwise the courier costs 20,000 sum.\n\nThe courier "
       "calls you an hour before arriving."},
      // -- payment --
      {"payment", "uz", "To'lov usullari",
       "To'lovni Uzcard yoki Humo kartasi orqali, Payme va Click ilovalari "
       "bilan yoki naqd pulda kuryerga qilishingiz mumkin. Karta bilan "
       "to'langan buyurtmalar darhol tasdiqlanadi. Naqd to'lovda kuryer chek "
       "beradi."},
      {"payment", "ru", "Способы оплаты",
       "Оплатить заказ можно картой Uzcard или Humo, через приложения Payme "
       "и Click или наличными курьеру. Заказы, оплаченные картой, "
       "подтверждаются сразу. При оплате наличными курьер выдаёт чек."},
      {"payment", "en", "Payment methods",
       "You can pay by Uzcard or Humo card, through the Payme and Click apps, "
       "or in cash to the courier. Orders paid by card are confirmed at once. "
       "When you pay in cash the courier gives you a receipt."},
      // -- returns --
      {"returns", "uz", "Qaytarish va almashtirish",
       "Mahsulotni olgan kundan boshlab 14 kun ichida qaytarishingiz yoki "
       "almashtirishingiz mumkin. Mahsulot ishlatilmagan va qadog'i butun "
       "bo'lishi kerak. Pul besh ish kuni ichida kartangizga qaytariladi."},
      {"returns", "ru", "Возврат и обмен",
       "Вернуть или обменять товар можно в течение 14 дней со дня получения. "
       "Товар должен быть неиспользованным, в целой упаковке. Деньги "
       "возвращаются на карту в течение пяти рабочих дней."},
      {"returns", "en", "Returns and exchanges",
       "You can return or exchange an item within 14 days of receiving it. "
       "The item must be unused and in its original packaging. The money is "
       "refunded to your card within five business days."},
      // -- warranty --
      {"warranty", "uz", "Kafolat",
       "Barcha elektronika uchun bir yillik kafolat beriladi. Nosozlik "
       "bo'lsa, mahsulotni servis markazimizga olib keling yoki kafolat "
       "talonini ko'rsatib ariza qoldiring. Ta'mirlash bepul amalga "
       "oshiriladi."},
      {"warranty", "ru", "Гарантия",
       "На всю электронику действует гарантия один год. При поломке "
       "принесите товар в наш сервисный центр или оставьте заявку, показав "
       "гарантийный талон. Ремонт по гарантии бесплатный."},
      {"warranty", "en", "Warranty",
       "All electronics come with a one-year warranty. If something breaks, "
       "bring the item to our service centre or file a claim with your "
       "warranty card. Repairs under warranty are free."},
      // -- tracking --
      {"tracking", "uz", "Buyurtma holatini kuzatish",
       "Buyurtma rasmiylashtirilgach, SMS orqali buyurtma raqami keladi. Shu "
       "raqam bilan saytimizdagi \"Buyurtmalarim\" bo'limida buyurtma "
       "qayerdaligini kuzatishingiz mumkin. Buyurtmani jo'natilgunga qadar "
       "bekor qilish mumkin."},
      {"tracking", "ru", "Отслеживание заказа",
       "После оформления заказа вы получите SMS с номером заказа. По этому "
       "номеру в разделе «Мои заказы» на сайте можно отследить, где "
       "находится посылка. Отменить заказ можно до его отправки."},
      {"tracking", "en", "Tracking your order",
       "After you place an order you get a text message with its order "
       "number. With that number you can track where your parcel is in the "
       "\"My orders\" section of our website. An order can be cancelled until "
       "it has shipped."},
      // -- contacts --
      {"contacts", "uz", "Ish vaqti va aloqa",
       "Do'konimiz har kuni soat 9:00 dan 21:00 gacha ishlaydi. Qo'llab-"
       "quvvatlash xizmatiga +998 71 200 00 00 raqami orqali yoki Telegram "
       "botimiz orqali murojaat qiling. Manzil: Toshkent, Amir Temur "
       "ko'chasi, 1."},
      {"contacts", "ru", "Часы работы и контакты",
       "Магазин работает ежедневно с 9:00 до 21:00. Служба поддержки "
       "отвечает по телефону +998 71 200 00 00 и в нашем Telegram-боте. "
       "Адрес: Ташкент, улица Амира Темура, 1."},
      {"contacts", "en", "Opening hours and contacts",
       "The shop is open every day from 9:00 to 21:00. Our support team "
       "answers at +998 71 200 00 00 and in our Telegram bot. Address: "
       "Tashkent, Amir Temur street, 1."},
  };
  return docs;
}

} // namespace karvon::actors
